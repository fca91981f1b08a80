# Sourced by the launch scripts: print_cmd prints a command so that it can be pasted into a shell
# (arguments with special characters in '...').
print_cmd() {
  local arg out=()
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}
