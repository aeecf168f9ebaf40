//! openraft's storage conformance suite (`openraft::testing::Suite`) on
//! walden: every case as a test of its own, each on a fresh store in a
//! temporary directory, and once more the whole suite as openraft runs it
//! (`Suite::test_all`).

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use walden_raft::store::{default_wal_options, open};
use walden_raft::types::StorageError;
use walden_raft::{LogStore, StateMachine, TypeConfig};

/// Opens walden in a new temporary directory; the directory lives as long
/// as the guard the suite keeps.
struct WaldenBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for WaldenBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (log, sm, report) = open(dir.path(), default_wal_options()).expect("open walden-raft storage");
        assert!(report.loaded.is_none() && report.skipped.is_empty(), "a new directory holds no snapshot");
        Ok((dir, log, sm))
    }
}

/// Runs a case on a runtime of its own, as the suite does.
fn run_fut<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("a tokio runtime").block_on(f)
}

type WaldenSuite = Suite<TypeConfig, LogStore, StateMachine, WaldenBuilder, TempDir>;

/// One `#[test]` per case of `Suite::test_store`, in its order.
macro_rules! suite_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let result = run_fut(async {
                    let (_dir, log, sm) = WaldenBuilder.build().await?;
                    WaldenSuite::$case(log, sm).await
                });
                result.unwrap_or_else(|e| panic!("case {} failed: {e}", stringify!($case)));
            }
        )*
        /// How many cases the list above holds.
        const CASES: usize = [$(stringify!($case)),*].len();
    };
}

suite_cases!(
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_log_and_sm,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    try_get_log_entry,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_since_11,
    delete_logs_since_0,
    append_to_log,
    snapshot_meta,
    apply_single,
    apply_multiple,
);

/// The 35th case takes the builder itself: it builds a snapshot on one
/// store and installs it on another.
#[test]
fn transfer_snapshot() {
    run_fut(WaldenSuite::transfer_snapshot(&WaldenBuilder)).expect("transfer_snapshot");
}

#[test]
fn the_case_list_is_the_suites_34_plus_transfer_snapshot() {
    assert_eq!(CASES + 1, 35);
}

/// The whole suite, as openraft runs it.
#[test]
fn suite_test_all() {
    WaldenSuite::test_all(WaldenBuilder).expect("Suite::test_all");
}
