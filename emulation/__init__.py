"""The release state machine's emulation: moto's Step Functions interpreter (patched), stateful
fakes of the AWS APIs a release calls, and the resolution of synthesized definitions. Shared by
tests/release, bench/release_bench.py and tools/ (which import nothing from tests/)."""
