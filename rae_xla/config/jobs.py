"""The jobs `config.job` may name."""

# Job name -> module with `run(config, workdir, runtime)`. A literal dict, so a reader can grep where a job lives.
JOBS = {
    "info": "rae_xla.info",
    "train_stage2": "rae_xla.train.stage2",
    "sample": "rae_xla.sampling.sample_job",
    "sample_fid": "rae_xla.sampling.fid_job",
    "reconstruct": "rae_xla.sampling.recon_job",
    "stats": "rae_xla.eval.latent_stats",
    "evaluate": "rae_xla.eval.evaluate",
    "reference_stats": "rae_xla.eval.reference",
    "train_stage1": "rae_xla.train.stage1",
    "quickstart": "rae_xla.quickstart",
}
