//! The second application of the tests (and of the bench): a bank of
//! counters. Its own openraft types ([`BankConfig`]), its own state
//! ([`Bank`]: balances by account number) and responses (the balance after
//! each operation, or why it was refused), nothing shared with the
//! key-value example.
//!
//! A snapshot's application stream is a u32 account count, then each
//! account as a u32 number and a u64 balance, little-endian.

use openraft::LogId;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use walden_raft::{AppState, SnapshotData};

openraft::declare_raft_types!(
    /// The bank's types.
    pub BankConfig:
        D = BankRequest,
        R = BankResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<BankConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One operation on the bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankOp {
    /// Adds `amount` to `account` (opened at 0 if new).
    Deposit { account: u32, amount: u64 },
    /// Moves `amount` from one account to another; refused if `from` holds
    /// less.
    Transfer { from: u32, to: u32, amount: u64 },
}

/// Operations applied in order as one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankRequest(pub Vec<BankOp>);

/// For each operation, the balance of the account it names first
/// afterwards, or why it was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankResponse(pub Vec<Result<u64, String>>);

/// The balances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    pub balances: imbl::OrdMap<u32, u64>,
}

impl Bank {
    pub fn balance(&self, account: u32) -> u64 {
        self.balances.get(&account).copied().unwrap_or(0)
    }

    /// The sum of every balance (transfers keep it; deposits add to it).
    pub fn total(&self) -> u64 {
        self.balances.values().sum()
    }

    fn op(&mut self, op: BankOp) -> Result<u64, String> {
        match op {
            BankOp::Deposit { account, amount } => {
                let balance = self.balance(account).checked_add(amount).ok_or("balance overflow")?;
                self.balances.insert(account, balance);
                Ok(balance)
            }
            BankOp::Transfer { from, to, amount } => {
                let have = self.balance(from);
                if have < amount {
                    return Err(format!("account {from} holds {have}, less than {amount}"));
                }
                let credited = self.balance(to).checked_add(amount).ok_or("balance overflow")?;
                self.balances.insert(from, have - amount);
                self.balances.insert(to, credited);
                Ok(self.balance(from))
            }
        }
    }
}

impl AppState<BankConfig> for Bank {
    type Frozen = imbl::OrdMap<u32, u64>;

    fn empty() -> Self {
        Bank::default()
    }

    fn apply(&mut self, _: &LogId<u64>, request: BankRequest) -> BankResponse {
        BankResponse(request.0.into_iter().map(|op| self.op(op)).collect())
    }

    fn response_without_request(&self) -> BankResponse {
        BankResponse::default()
    }

    fn freeze(&self) -> Self::Frozen {
        self.balances.clone()
    }

    fn write_snapshot(balances: &Self::Frozen, out: &mut dyn Write) -> io::Result<u64> {
        out.write_all(&(balances.len() as u32).to_le_bytes())?;
        for (account, balance) in balances.iter() {
            out.write_all(&account.to_le_bytes())?;
            out.write_all(&balance.to_le_bytes())?;
        }
        Ok(balances.len() as u64)
    }

    fn read_snapshot(input: &mut dyn Read) -> io::Result<Self> {
        let mut count = [0u8; 4];
        input.read_exact(&mut count)?;
        let mut balances = imbl::OrdMap::new();
        for _ in 0..u32::from_le_bytes(count) {
            let (mut account, mut balance) = ([0u8; 4], [0u8; 8]);
            input.read_exact(&mut account)?;
            input.read_exact(&mut balance)?;
            let account = u32::from_le_bytes(account);
            if balances.insert(account, u64::from_le_bytes(balance)).is_some() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("account {account} twice")));
            }
        }
        Ok(Bank { balances })
    }
}
