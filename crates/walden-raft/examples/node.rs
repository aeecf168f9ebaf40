//! A walden-raft node and its admin client, in one program.
//!
//! ```text
//! node serve --id 1 --addr 127.0.0.1:7001 --dir /tmp/walden-raft/1 [--memory]
//! node init ADDR 1=127.0.0.1:7001 2=127.0.0.1:7002 3=127.0.0.1:7003
//! node put ADDR KEY VALUE        (any node: the client follows the leader hint)
//! node get ADDR KEY [--stale]    (linearizable; --stale: that node's applied state as it is)
//! node status ADDR
//! node add-learner ADDR ID NODE_ADDR
//! node change-membership ADDR ID,ID,...
//! ```
//!
//! A `get` is linearizable by default: the node asked confirms through
//! the leader (openraft's read index) that its answer holds every write
//! acknowledged before the read began, forwarding the read to the leader
//! if it is a follower. `--stale` reads the asked node's applied state
//! with no such check, and the reply says so.
//!
//! The node and the key-value application are in examples/common/ (shared
//! with the bench and the tests); this is argument parsing only.

#[path = "common/mod.rs"]
mod common;

use common::kv::Kv;
use common::network::{Message, Reply};
use common::node::{self, Client, NodeConfig, StorageKind};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

const USAGE: &str = "usage:
  node serve --id ID --addr HOST:PORT --dir DIR [--memory]
  node init ADDR ID=HOST:PORT...
  node put ADDR KEY VALUE
  node get ADDR KEY [--stale]
  node status ADDR
  node add-learner ADDR ID HOST:PORT
  node change-membership ADDR ID,ID,...";

fn usage(why: &str) -> ExitCode {
    eprintln!("{why}\n{USAGE}");
    ExitCode::from(2)
}

fn serve(args: &[String]) -> ExitCode {
    let (mut id, mut addr, mut dir, mut storage) = (None, None, None, StorageKind::Walden);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--id" => id = it.next().and_then(|v| v.parse::<u64>().ok()),
            "--addr" => addr = it.next().cloned(),
            "--dir" => dir = it.next().cloned(),
            "--memory" => storage = StorageKind::Memory,
            other => return usage(&format!("unknown flag {other}")),
        }
    }
    let (Some(id), Some(addr), Some(dir)) = (id, addr, dir) else { return usage("serve needs --id, --addr and --dir") };
    let mut config = NodeConfig::new(id, addr, dir);
    config.storage = storage;
    match node::run::<Kv>(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node {id}: {e}");
            ExitCode::from(1)
        }
    }
}

async fn admin(command: &str, addr: &str, rest: &[String]) -> Result<String, String> {
    let reply = match (command, rest) {
        ("init", members) => {
            let mut map = BTreeMap::new();
            for member in members {
                let (id, at) = member.split_once('=').ok_or(format!("{member}: expected ID=HOST:PORT"))?;
                map.insert(id.parse::<u64>().map_err(|e| format!("{id}: {e}"))?, at.to_owned());
            }
            node::call::<Kv>(addr, &Message::Init(map)).await
        }
        ("put", [key, value]) => {
            Client::<Kv>::new(vec![addr.to_owned()]).write((key.clone(), value.clone())).await.map(Reply::Write)
        }
        ("get", [key]) => {
            node::call(addr, &Message::Read { read: vec![key.clone()], stale: false, forwarded: false }).await
        }
        ("get", [key, flag]) if flag == "--stale" => {
            node::call(addr, &Message::Read { read: vec![key.clone()], stale: true, forwarded: false }).await
        }
        ("status", []) => node::call::<Kv>(addr, &Message::Status).await,
        ("add-learner", [id, at]) => {
            let id = id.parse::<u64>().map_err(|e| format!("{id}: {e}"))?;
            Client::<Kv>::new(vec![addr.to_owned()]).call_leader(&Message::AddLearner(id, at.clone())).await
        }
        ("change-membership", [ids]) => {
            let ids: BTreeSet<u64> =
                ids.split(',').map(|s| s.parse::<u64>().map_err(|e| format!("{s}: {e}"))).collect::<Result<_, _>>()?;
            Client::<Kv>::new(vec![addr.to_owned()]).call_leader(&Message::ChangeMembership(ids)).await
        }
        _ => return Err(format!("bad arguments for {command}")),
    };
    match reply.map_err(|e| format!("{addr}: {e}"))? {
        Reply::Write(previous) => Ok(format!("ok (previous: {previous:?})")),
        Reply::Read { value, served_by, stale } => {
            let value = value.into_iter().next().flatten().unwrap_or_else(|| "(not found)".into());
            Ok(if stale {
                format!("{value}\n(stale read: node {served_by}'s applied state, which may miss writes acknowledged elsewhere)")
            } else {
                format!("{value}\n(linearizable: confirmed by the leader's read index, served by node {served_by})")
            })
        }
        Reply::Status(s) => serde_json::to_string_pretty(&s).map_err(|e| e.to_string()),
        Reply::Done => Ok("ok".into()),
        Reply::NotLeader { leader } => Err(format!("not the leader; try {leader:?}")),
        Reply::Error(e) => Err(e),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else { return usage("no command") };
    if command == "serve" {
        return serve(&args[1..]);
    }
    let Some(addr) = args.get(1) else { return usage("no node address") };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(admin(command, addr, &args[2..])) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
