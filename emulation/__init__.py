"""The release state machine's emulation: moto's Step Functions interpreter (patched), stateful
fakes of the AWS APIs a release calls, the resolution of synthesized definitions, and the strict
layer (strict.py: authorization against the synthesized policies, parameter validation, the
end-of-execution event chain). Shared by tests/release, bench/release_bench.py and tools/ (which
import nothing from tests/)."""
