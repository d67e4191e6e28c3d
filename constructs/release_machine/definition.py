"""The release state machine's definition, one phase at a time, and the lease cleanup machine.

    validate  ValidateInput ─▶ RecordStart ─▶ CheckServices ─▶ ServicesReady
    hold      CheckHold ─▶ Held (releases held: ReleaseHeld, nothing taken)
    recovery  ReleasesSomething: a migrate status/resolve execution releases nothing (recovery.py)
    images    ResolveImages (Map: ecr:DescribeImages per repository)
    lease     AcquireLease (conditional PutItem, retried while another release holds it)
    restore   RestorePoint ─▶ DescribeDatabase ─▶ WantsSnapshot ─▶ [CreateSnapshot ─▶ (SnapshotPollDelay
              ─▶ DescribeSnapshot ─▶ SnapshotProgress)*] ─▶ RecordRestorePoint   (only when migrating)
    migrate   ShouldMigrate ─▶ CheckLeaseBeforeMigration ─▶ Describe/Register migrate revision
              ─▶ RunMigration ─▶ (MigrationPollDelay ─▶ DescribeMigration ─▶ MigrationProgress)*
              ─▶ RecordMigrated            time limit: StopMigration
    deploy    OpenDeployGate ─▶ (NextWave ─▶ DeployWave (Map, one iteration per service, at most
              max_parallel_rollouts at once: CheckLeaseBeforeDeploy ─▶ DescribeService ─▶ ... ─▶
              UpdateService ─▶ RecordDeployment ─▶ (RolloutPollDelay ─▶ WaitForRollout ─▶
              RolloutProgress)* ─▶ ServiceDone) ─▶ RecordWave)* ─▶ DeployOutcome
    record    RecordRelease (SSM) ─▶ ReleaseLease ─▶ RecordSuccess ─▶ Released
    failure   FailRelease ─▶ ReleaseLeaseAfterFailure ─▶ RecordFailure ─▶ Failed

Every state's IAM comes with it (`Phase.grants`); the construct turns them into policy statements.
The lease cleanup machine is in cleanup.py.
docs/release.md has the contract, the diagram, the AWS behaviour each state relies on, and the runbook.
"""

from __future__ import annotations

from typing import Any

from constructs.release_machine.asl import (
    DefinitionSettings,
    Phase,
)
from constructs.release_machine.deploy import OPEN_DEPLOY_GATE, deploy_phase
from constructs.release_machine.hold import CHECK_HOLD, hold_phase
from constructs.release_machine.images import RESOLVE_IMAGES, images_phase
from constructs.release_machine.lease import ACQUIRE_LEASE, lease_phase
from constructs.release_machine.migrate import SHOULD_MIGRATE, migrate_phase
from constructs.release_machine.record import RECORD_RELEASE, RELEASE_LEASE, failure_phase, progress_record, record_phase
from constructs.release_machine.recovery import RELEASES_SOMETHING, recovery_phase
from constructs.release_machine.restore_point import RESTORE_POINT, restore_point_phase
from constructs.release_machine.validate import VALIDATE_INPUT, validate_phase

RECORD_MIGRATED = "RecordMigrated"


def build_release(s: DefinitionSettings) -> tuple[dict[str, Any], Phase]:
    """The definition (ready for json.dumps / Stack.to_json_string) and every phase's grants."""
    phase = Phase()
    phase.add(validate_phase(s, CHECK_HOLD))
    phase.add(hold_phase(s, RESOLVE_IMAGES))
    phase.add(images_phase(s, ACQUIRE_LEASE))
    if s.database_instance_identifier:
        phase.add(lease_phase(s, RESTORE_POINT))
        phase.add(restore_point_phase(s, SHOULD_MIGRATE))
    else:
        phase.add(lease_phase(s, SHOULD_MIGRATE))
    phase.add(migrate_phase(s, RECORD_MIGRATED, RECORD_MIGRATED))
    phase.states[RECORD_MIGRATED] = progress_record(s, OPEN_DEPLOY_GATE)
    phase.add(deploy_phase(s, RELEASES_SOMETHING))
    phase.add(recovery_phase(s, record_release=RECORD_RELEASE, skip_record=RELEASE_LEASE))
    phase.add(record_phase(s))
    phase.add(failure_phase(s))
    definition = {
        "Comment": "One execution = one release: validate, resolve digests, lease, migrate, deploy, record.",
        "QueryLanguage": "JSONata",
        "TimeoutSeconds": s.execution_timeout_seconds,
        "StartAt": VALIDATE_INPUT,
        "States": phase.states,
    }
    return definition, phase
