//! openraft's storage conformance suite (`openraft::testing::Suite`) on
//! walden, for two applications with nothing in common: the key-value map
//! of the examples and the bank of counters of tests/common/bank.rs. For
//! each: every case as a test of its own, each on a fresh store in a
//! temporary directory, and once more the whole suite as openraft runs it
//! (`Suite::test_all`).

#[allow(dead_code)]
#[path = "common/bank.rs"]
mod bank;
#[path = "../examples/common/mod.rs"]
mod common;

/// One `#[test]` per case of `Suite::test_store` given, in its order (run
/// inside a module that defines `run_fut`, `WaldenBuilder`, `WaldenSuite`).
macro_rules! cases {
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

/// The suite's 34 cases that take a store, then `transfer_snapshot` and
/// `test_all`, for the configuration `$config` and the state `$state`.
macro_rules! suite_for {
    ($module:ident, $config:ty, $state:ty) => {
        mod $module {
            use openraft::testing::{StoreBuilder, Suite};
            use tempfile::TempDir;
            use walden_raft::{default_wal_options, open, LogStore, StateMachine};

            type Config = $config;
            type Log = LogStore<Config>;
            type Sm = StateMachine<Config, $state>;

            /// Opens walden in a new temporary directory; the directory
            /// lives as long as the guard the suite keeps.
            struct WaldenBuilder;

            impl StoreBuilder<Config, Log, Sm, TempDir> for WaldenBuilder {
                async fn build(&self) -> Result<(TempDir, Log, Sm), openraft::StorageError<u64>> {
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    let (log, sm, report) =
                        open::<Config, $state>(dir.path(), default_wal_options()).expect("open walden-raft storage");
                    assert!(report.loaded.is_none() && report.skipped.is_empty(), "a new directory holds no snapshot");
                    Ok((dir, log, sm))
                }
            }

            /// Runs a case on a runtime of its own, as the suite does.
            fn run_fut<T>(f: impl std::future::Future<Output = T>) -> T {
                tokio::runtime::Runtime::new().expect("a tokio runtime").block_on(f)
            }

            type WaldenSuite = Suite<Config, Log, Sm, WaldenBuilder, TempDir>;

            cases!(
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

            /// The 35th case takes the builder itself: it builds a snapshot
            /// on one store and installs it on another.
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
        }
    };
}

suite_for!(kv, crate::common::kv::KvConfig, crate::common::kv::KvState);
suite_for!(bank_of_counters, crate::bank::BankConfig, crate::bank::Bank);
