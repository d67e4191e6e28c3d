"""The release CLI: start a release (the state machine), follow it, and read an environment's state.

`python -m release start --env prod --image-tag <sha> --wait` starts one release and follows it to
the end; `status` shows recent releases and who holds the release lease; `outputs` prints the
environment's stack outputs for scripts and GitHub Actions. Everything the CLI needs to find comes
from `config/<env>.yaml` and the stacks' outputs: no ARNs, VPC ids or names are passed by hand.
"""

from release.errors import ExitCode, ReleaseError

__all__ = ["ExitCode", "ReleaseError"]
