"""`hf://<repo_id>[@revision]/<path>`: files and folders on the Hugging Face Hub, resolved through its cache.

Every config field that names a file or a folder (decoder weights, stats, `train.init_from`, sampling checkpoints,
the discriminator backbone, encoder folders) also takes such a path; the loaders call `local_file` / `local_dir`,
which return a path on this machine and leave local paths, `gs://` URLs and plain hub ids untouched:

    hf://nyu-visionx/RAE-collections/decoders/dinov2/wReg_base/ViTXL_n08/model.pt       (a file, branch main)
    hf://nyu-visionx/RAE-collections@a1b2c3d/stats/dinov2/wReg_base/imagenet1k/stat.pt  (pinned to a commit)
    hf://facebook/dinov2-with-registers-base                                           (a whole repository)

Resolution is `huggingface_hub`'s: its cache (`HF_HOME`, `HF_HUB_CACHE`), `HF_HUB_OFFLINE=1`, and its revision
rules (a branch, a tag or a commit hash). On a TPU pod every host resolves from its own local cache, so a pod
either has network on each host or a pre-filled cache (`hf download ...` once per host, or a shared HF_HOME).
A file that is neither cached nor reachable is one `HubFileNotFoundError` naming it and the command that fetches it.
"""
from __future__ import annotations

import dataclasses
import os

from rae_xla import errors

SCHEME = "hf://"


class HubFileNotFoundError(errors.InputPathError):
    """An hf:// file or folder that cannot be had: not cached and the Hub unreachable, or not in the repository.

    A user-input error (main.py prints one FATAL line) and a FileNotFoundError.
    """


@dataclasses.dataclass(frozen=True)
class HubPath:
    """hf://<repo_id>[@revision][/<path>] split into its parts (path '' = the whole repository)."""
    repo_id: str
    revision: str | None
    path: str

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{revision}" + (f"/{self.path}" if self.path else "")

    def fetch_command(self) -> str:
        """The CLI line that puts this file (or repository) into the cache, for error messages."""
        revision = f" --revision {self.revision}" if self.revision else ""
        return f"hf download {self.repo_id}" + (f" {self.path}" if self.path else "") + revision


def is_hub_path(path) -> bool:
    return isinstance(path, str) and path.startswith(SCHEME)


def parse(url: str) -> HubPath:
    """'hf://owner/repo@rev/a/b.pt' -> HubPath('owner/repo', 'rev', 'a/b.pt'); a malformed URL is a ValueError."""
    if not is_hub_path(url):
        raise ValueError(f"{url!r} is not an hf:// path")
    parts = url[len(SCHEME):].split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{url!r} is not hf://<owner>/<repo>[@revision][/<path>] (e.g. "
                         f"hf://nyu-visionx/RAE-collections/stats/dinov2/wReg_base/imagenet1k/stat.pt)")
    name, _, revision = parts[1].partition("@")
    if "@" in parts[1] and not revision:
        raise ValueError(f"{url!r}: an empty revision after '@'")
    return HubPath(repo_id=f"{parts[0]}/{name}", revision=revision or None, path="/".join(p for p in parts[2:] if p))


def local_file(path):
    """A local path for `path`: hf:// files are downloaded into (or found in) the HF cache; others unchanged."""
    if not is_hub_path(path):
        return path
    hub_path = parse(path)
    if not hub_path.path:
        raise HubFileNotFoundError(f"{path!r} names a repository, not a file; add the file's path inside it")
    from huggingface_hub import hf_hub_download
    return _resolve(hub_path, lambda: hf_hub_download(hub_path.repo_id, hub_path.path, revision=hub_path.revision))


def local_dir(path):
    """A local folder for `path`: an hf:// repository (or a folder inside one) from the HF cache; others unchanged."""
    if not is_hub_path(path):
        return path
    hub_path = parse(path)
    from huggingface_hub import snapshot_download

    def download() -> str:
        patterns = [f"{hub_path.path}/*"] if hub_path.path else None
        root = snapshot_download(hub_path.repo_id, revision=hub_path.revision, allow_patterns=patterns)
        folder = os.path.join(root, hub_path.path) if hub_path.path else root
        if not os.path.isdir(folder):  # Offline snapshot_download returns the snapshot without checking patterns.
            raise _not_found(hub_path, "the folder is not in the cached snapshot")
        return folder

    return _resolve(hub_path, download)


def _resolve(hub_path: HubPath, download) -> str:
    """Runs the hub client's download, turning its many error types into one clear HubFileNotFoundError."""
    from huggingface_hub import errors
    try:
        return download()
    except HubFileNotFoundError:
        raise
    except errors.LocalEntryNotFoundError as e:  # Offline (or no network) and not cached.
        raise _not_found(hub_path, "it is not in the local Hugging Face cache and the Hub cannot be reached "
                                   f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})") from e
    except errors.RevisionNotFoundError as e:
        raise _not_found(hub_path, f"revision {hub_path.revision!r} does not exist") from e
    except errors.EntryNotFoundError as e:
        raise _not_found(hub_path, "the repository has no such file") from e
    except errors.RepositoryNotFoundError as e:
        raise _not_found(hub_path, "the repository does not exist or is private (log in with `hf auth login`)") from e


def _not_found(hub_path: HubPath, why: str) -> HubFileNotFoundError:
    from huggingface_hub import constants
    return HubFileNotFoundError(
        f"{hub_path}: {why}. Fetch it where the Hub is reachable with `{hub_path.fetch_command()}` (cache: "
        f"{constants.HF_HUB_CACHE}; set HF_HOME or HF_HUB_CACHE to use another), or point the field at a local or "
        f"gs:// copy of the file.")


def probe(path: str, folder: bool = False) -> str | None:
    """None if the hf:// file (or folder / repository) is in the local cache or on the Hub, else why not.

    Metadata only (the preflight's check, rae_xla/preflight/): the cache is looked up first; where it lacks the
    file and the Hub may be reached (HF_HUB_OFFLINE unset), one HEAD request (file) or repository lookup
    (folder) asks the Hub. Nothing is downloaded.
    """
    try:
        hub_path = parse(path)
    except ValueError as e:
        return str(e)
    from huggingface_hub import constants
    if _in_cache(hub_path, folder or not hub_path.path):
        return None
    fetch = f"fetch it where the Hub is reachable with `{hub_path.fetch_command()}`"
    if constants.HF_HUB_OFFLINE:
        return f"not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1; {fetch}"
    from huggingface_hub import HfApi, errors as hub_errors, get_hf_file_metadata, hf_hub_url
    try:
        if folder or not hub_path.path:
            HfApi().repo_info(hub_path.repo_id, revision=hub_path.revision)
        else:
            get_hf_file_metadata(hf_hub_url(hub_path.repo_id, hub_path.path, revision=hub_path.revision))
        return None
    except hub_errors.RevisionNotFoundError:
        return f"revision {hub_path.revision!r} does not exist"
    except hub_errors.EntryNotFoundError:
        return "the repository has no such file"
    except hub_errors.RepositoryNotFoundError:
        return "the repository does not exist or is private (log in with `hf auth login`)"
    except Exception as e:  # noqa: BLE001  No network, DNS, proxy, 5xx: the cause is the answer.
        cause = errors.network_cause(e) or f"{type(e).__name__}: {e}"
        return f"not in the local Hugging Face cache and the Hub cannot be reached ({cause}); {fetch}"


def _in_cache(hub_path: HubPath, folder: bool) -> bool:
    """Whether the HF cache holds the file (or, for `folder`, any file under the folder / repository)."""
    from huggingface_hub import constants, try_to_load_from_cache
    if not folder:
        return isinstance(try_to_load_from_cache(hub_path.repo_id, hub_path.path, revision=hub_path.revision), str)
    root = os.path.join(constants.HF_HUB_CACHE, "models--" + hub_path.repo_id.replace("/", "--"))
    revision = hub_path.revision or "main"
    ref = os.path.join(root, "refs", revision)
    if os.path.isfile(ref):
        with open(ref) as f:
            revision = f.read().strip()
    target = os.path.join(root, "snapshots", revision, hub_path.path)
    return os.path.isdir(target) and any(os.scandir(target))
