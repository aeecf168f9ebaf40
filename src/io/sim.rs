//! [`SimFs`]: an in-memory file system for crash and fault tests. Compiled
//! only with the `sim` feature (walden's own tests turn it on); an
//! application's build never contains it.
//!
//! It keeps, for every file, the bytes a reader sees and the bytes that
//! would survive power loss, and for the directory the names a reader sees
//! and the names that are durable. [`SimFs::crash`] returns the file system
//! as a machine would find it after power loss: synced bytes and names kept;
//! unsynced writes dropped, kept or torn at 512-byte sectors (zeros, garbage,
//! old or new bytes, independently per sector, and only within the bytes the
//! write covered); unsynced directory operations
//! kept up to a random point in their order.
//!
//! Faults: the Nth I/O call (counting every call but `size_bytes`,
//! `list_dir`, `create_dir_all` and `lock_dir`)
//! can fail with EIO or ENOSPC, once or from then on, and a failed fsync
//! can forget the unsynced writes, as Linux does, so a later fsync succeeds
//! with the data gone.

use super::{DirLock, Vfs, VfsFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SECTOR_BYTES: u64 = 512;

/// What happens to unsynced data in a simulated crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashMode {
    /// Every unsynced write and directory operation is lost.
    DropUnsynced,
    /// Every unsynced write and directory operation survives (a process
    /// crash: the kernel still had them).
    KeepUnsynced,
    /// Each unsynced sector independently survives, is lost, is zeroed or
    /// becomes garbage; a random prefix of unsynced directory operations
    /// survives. Chosen by the seed.
    Tear {
        /// Chooses what happens to each sector and how many directory
        /// operations survive; the same seed tears the same way.
        seed: u64,
    },
}

/// The kinds of I/O call, for fault targeting and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SimOp {
    /// [`Vfs::create_new`].
    Create,
    /// [`Vfs::open`].
    Open,
    /// [`VfsFile::write_all_at`].
    Write,
    /// [`VfsFile::read_exact_at`].
    Read,
    /// [`VfsFile::sync_data`] and [`VfsFile::sync_and_evict_cache`].
    Sync,
    /// [`VfsFile::set_len`].
    SetLen,
    /// [`VfsFile::map`].
    Map,
    /// [`Vfs::rename`].
    Rename,
    /// [`Vfs::remove_file`].
    Remove,
    /// [`Vfs::sync_dir`].
    SyncDir,
}

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// The call fails with EIO and has no effect.
    Eio,
    /// The call fails with ENOSPC and has no effect.
    Enospc,
    /// An fsync fails with EIO and the kernel forgets the unsynced writes:
    /// readers still see them, a crash loses them, and the next fsync
    /// reports success.
    SyncLosesData,
}

/// An injected fault: the `at_call`th matching call (1-based) fails, and
/// with `persistent` every matching call after it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which matching call fails first, counting from 1 since the fault was
    /// injected.
    pub at_call: u64,
    /// What the failing call does.
    pub kind: FaultKind,
    /// Whether every matching call after the first fails too.
    pub persistent: bool,
    /// Only calls of this kind count and fail; `None` means every call.
    pub only: Option<SimOp>,
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Byte ranges written since the last successful sync.
    unsynced: Vec<(u64, u64)>,
}

enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    /// A rename within one directory: atomic, as POSIX promises, so a crash
    /// keeps either the old name or the new one, never neither.
    Rename(PathBuf, PathBuf, u64),
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    pending: Vec<DirOp>,
    dirs: BTreeSet<PathBuf>,
    calls: u64,
    matching_calls: u64,
    fault: Option<Fault>,
    fault_fired: bool,
    space_limit_bytes: Option<u64>,
    trace: Vec<SimOp>,
}

/// The simulated file system. Cloning shares it. Needs the `sim` feature.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
    /// Holds file syncs back while closed (see [`SimFs::hold_syncs`]).
    gate: Arc<(Mutex<SyncGate>, parking_lot::Condvar)>,
}

/// Whether file syncs are held back, and how many are waiting; and how
/// many of the next file writes are to be held, and how many are.
#[derive(Default)]
struct SyncGate {
    closed: bool,
    waiting: usize,
    writes_to_hold: usize,
    writes_held: usize,
    writes_released: bool,
}

/// A file of a [`SimFs`].
pub struct SimFile {
    fs: SimFs,
    ino: u64,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

impl State {
    /// Counts a call and decides whether an injected fault fires on it.
    fn call(&mut self, op: SimOp) -> Option<FaultKind> {
        self.calls += 1;
        self.trace.push(op);
        let fault = self.fault?;
        if fault.only.is_some_and(|only| only != op) {
            return None;
        }
        self.matching_calls += 1;
        let fires =
            if fault.persistent { self.matching_calls >= fault.at_call } else { self.matching_calls == fault.at_call };
        if fires {
            self.fault_fired = true;
            Some(fault.kind)
        } else {
            None
        }
    }

    fn fail(&mut self, op: SimOp) -> io::Result<()> {
        match self.call(op) {
            None => Ok(()),
            Some(FaultKind::Enospc) => Err(enospc()),
            Some(_) => Err(eio()),
        }
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }

    fn check_space(&self, ino: u64, new_len: u64) -> io::Result<()> {
        let Some(limit) = self.space_limit_bytes else { return Ok(()) };
        let current = self.inodes[&ino].data.len() as u64;
        if new_len > current && self.used_bytes() + (new_len - current) > limit {
            return Err(enospc());
        }
        Ok(())
    }

    fn link(&mut self, path: &Path, ino: u64) {
        self.dir_op(DirOp::Link(path.to_owned(), ino));
    }

    fn unlink(&mut self, path: &Path) {
        self.dir_op(DirOp::Unlink(path.to_owned()));
    }

    /// Makes `op` visible at once; it becomes durable with its directory's sync.
    fn dir_op(&mut self, op: DirOp) {
        apply_dir_op(&mut self.names, &op);
        self.pending.push(op);
    }
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Makes every file sync (`sync_data`, `sync_and_evict_cache`) block
    /// until [`SimFs::release_syncs`]: a test can then see who waits for an
    /// fsync in progress, and who goes on.
    pub fn hold_syncs(&self) {
        self.gate.0.lock().closed = true;
    }

    /// Lets held and later file syncs through.
    pub fn release_syncs(&self) {
        self.gate.0.lock().closed = false;
        self.gate.1.notify_all();
    }

    /// How many file syncs are blocked by [`SimFs::hold_syncs`] now.
    pub fn syncs_held(&self) -> usize {
        self.gate.0.lock().waiting
    }

    /// Makes the next `count` file writes block until
    /// [`SimFs::release_writes`] (later ones go through): a test can stall
    /// one writer, as a preempted thread would be, and see who waits for it.
    pub fn hold_next_writes(&self, count: usize) {
        let mut gate = self.gate.0.lock();
        gate.writes_to_hold = count;
        gate.writes_released = false;
    }

    /// Lets the writes held by [`SimFs::hold_next_writes`] go on.
    pub fn release_writes(&self) {
        self.gate.0.lock().writes_released = true;
        self.gate.1.notify_all();
    }

    /// How many file writes are blocked by [`SimFs::hold_next_writes`] now.
    pub fn writes_held(&self) -> usize {
        self.gate.0.lock().writes_held
    }

    fn pass_write_gate(&self) {
        let (gate, opened) = &*self.gate;
        let mut gate = gate.lock();
        if gate.writes_to_hold > 0 {
            gate.writes_to_hold -= 1;
            gate.writes_held += 1;
            while !gate.writes_released {
                opened.wait(&mut gate);
            }
            gate.writes_held -= 1;
        }
    }

    fn pass_sync_gate(&self) {
        let (gate, opened) = &*self.gate;
        let mut gate = gate.lock();
        if gate.closed {
            gate.waiting += 1;
            while gate.closed {
                opened.wait(&mut gate);
            }
            gate.waiting -= 1;
        }
    }

    /// Arms a fault; the call counter for it starts now.
    pub fn inject(&self, fault: Fault) {
        let mut st = self.state.lock();
        st.fault = Some(fault);
        st.fault_fired = false;
        st.matching_calls = 0;
    }

    /// Removes any armed fault.
    pub fn clear_fault(&self) {
        self.state.lock().fault = None;
    }

    /// Whether the armed fault has fired at least once.
    pub fn fault_fired(&self) -> bool {
        self.state.lock().fault_fired
    }

    /// Limits the total bytes of all files; growing past it is ENOSPC.
    pub fn set_space_limit(&self, limit_bytes: Option<u64>) {
        self.state.lock().space_limit_bytes = limit_bytes;
    }

    /// Total I/O calls so far.
    pub fn calls(&self) -> u64 {
        self.state.lock().calls
    }

    /// Every call so far, in order.
    pub fn trace(&self) -> Vec<SimOp> {
        self.state.lock().trace.clone()
    }

    /// The bytes a reader of `path` sees now, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        st.names.get(path).map(|ino| st.inodes[ino].data.clone())
    }

    /// Replaces the contents of `path` (creating it), durably: for tests
    /// that damage files on purpose.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        let mut st = self.state.lock();
        let ino = match st.names.get(path) {
            Some(&ino) => ino,
            None => {
                st.next_ino += 1;
                let ino = st.next_ino;
                st.inodes.insert(ino, Inode::default());
                st.names.insert(path.to_owned(), ino);
                st.durable_names.insert(path.to_owned(), ino);
                ino
            }
        };
        let inode = st.inodes.get_mut(&ino).expect("inode");
        inode.data = bytes.to_vec();
        inode.durable = bytes.to_vec();
        inode.unsynced.clear();
    }

    /// The file system as it would be found after power loss now.
    pub fn crash(&self, mode: CrashMode) -> SimFs {
        let st = self.state.lock();
        let mut rng = Rng(match mode {
            CrashMode::Tear { seed } => seed | 1,
            _ => 1,
        });
        let mut names = st.durable_names.clone();
        let keep_ops = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepUnsynced => st.pending.len(),
            CrashMode::Tear { .. } => rng.below(st.pending.len() as u64 + 1) as usize,
        };
        for op in &st.pending[..keep_ops] {
            apply_dir_op(&mut names, op);
        }
        let mut inodes = HashMap::new();
        for &ino in names.values() {
            let inode = &st.inodes[&ino];
            let bytes = match mode {
                CrashMode::DropUnsynced => inode.durable.clone(),
                CrashMode::KeepUnsynced => inode.data.clone(),
                CrashMode::Tear { .. } => tear(inode, &mut rng),
            };
            inodes.insert(ino, Inode { data: bytes.clone(), durable: bytes, unsynced: Vec::new() });
        }
        let state = State {
            inodes,
            next_ino: st.next_ino,
            durable_names: names.clone(),
            names,
            dirs: st.dirs.clone(),
            ..State::default()
        };
        SimFs { state: Arc::new(Mutex::new(state)), gate: Arc::default() }
    }
}

/// Makes `op` happen to a directory listing (durable names, or a crash's).
fn apply_dir_op(names: &mut BTreeMap<PathBuf, u64>, op: &DirOp) {
    match op {
        DirOp::Link(path, ino) => {
            names.insert(path.clone(), *ino);
        }
        DirOp::Unlink(path) => {
            names.remove(path);
        }
        DirOp::Rename(from, to, ino) => {
            names.remove(from);
            names.insert(to.clone(), *ino);
        }
    }
}

/// Each 512-byte sector touched by unsynced writes independently keeps the
/// new bytes, keeps the old ones, or turns to zeros or garbage. Only bytes an
/// unsynced write was writing change: bytes of the same sector that no
/// unsynced write covered keep their durable value (the media model in
/// docs/FORMAT.md).
fn tear(inode: &Inode, rng: &mut Rng) -> Vec<u8> {
    let mut out = inode.durable.clone();
    out.resize(inode.data.len(), 0);
    let mut fate = HashMap::new();
    for &(offset, len) in &inode.unsynced {
        let end_of_write = (offset + len).min(out.len() as u64);
        let mut at = offset;
        while at < end_of_write {
            let sector = at / SECTOR_BYTES;
            let piece_end = ((sector + 1) * SECTOR_BYTES).min(end_of_write);
            let (start, end) = (at as usize, piece_end as usize);
            match *fate.entry(sector).or_insert_with(|| rng.below(4)) {
                0 => out[start..end].copy_from_slice(&inode.data[start..end]),
                1 => {} // the old bytes stay
                2 => out[start..end].fill(0),
                _ => out[start..end].iter_mut().for_each(|b| *b = rng.next() as u8),
            }
            at = piece_end;
        }
    }
    out
}

/// splitmix64: small, seeded, good enough to choose crash outcomes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

impl Vfs for SimFs {
    type File = SimFile;

    fn create_new(&self, path: &Path) -> io::Result<SimFile> {
        let mut st = self.state.lock();
        st.fail(SimOp::Create)?;
        if st.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        st.next_ino += 1;
        let ino = st.next_ino;
        st.inodes.insert(ino, Inode::default());
        st.link(path, ino);
        Ok(SimFile { fs: self.clone(), ino })
    }

    fn open(&self, path: &Path, _write: bool) -> io::Result<SimFile> {
        let mut st = self.state.lock();
        st.fail(SimOp::Open)?;
        let ino = *st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(SimFile { fs: self.clone(), ino })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.fail(SimOp::Rename)?;
        let ino = *st.names.get(from).ok_or_else(|| not_found(from))?;
        if from.parent() == to.parent() {
            st.dir_op(DirOp::Rename(from.to_owned(), to.to_owned(), ino));
        } else {
            // Across directories each side becomes durable with its own
            // directory's sync.
            st.unlink(from);
            st.link(to, ino);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.fail(SimOp::Remove)?;
        if !st.names.contains_key(path) {
            return Err(not_found(path));
        }
        st.unlink(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.fail(SimOp::SyncDir)?;
        let pending = std::mem::take(&mut st.pending);
        for op in pending {
            let path = match &op {
                DirOp::Link(path, _) | DirOp::Unlink(path) | DirOp::Rename(_, path, _) => path,
            };
            if path.parent() != Some(dir) {
                st.pending.push(op);
                continue;
            }
            apply_dir_op(&mut st.durable_names, &op);
        }
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.lock().dirs.insert(dir.to_owned());
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        Ok(st
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn lock_dir(&self, _dir: &Path) -> io::Result<DirLock> {
        Ok(DirLock::none())
    }
}

impl VfsFile for SimFile {
    type Map = Arc<[u8]>;

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.pass_write_gate();
        let mut st = self.fs.state.lock();
        st.fail(SimOp::Write)?;
        let end = offset + buf.len() as u64;
        st.check_space(self.ino, end)?;
        let inode = st.inodes.get_mut(&self.ino).expect("inode");
        if inode.data.len() < end as usize {
            inode.data.resize(end as usize, 0);
        }
        inode.data[offset as usize..end as usize].copy_from_slice(buf);
        inode.unsynced.push((offset, buf.len() as u64));
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut st = self.fs.state.lock();
        st.fail(SimOp::Read)?;
        let data = &st.inodes[&self.ino].data;
        let end = offset as usize + buf.len();
        if end > data.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of file"));
        }
        buf.copy_from_slice(&data[offset as usize..end]);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.pass_sync_gate();
        let mut st = self.fs.state.lock();
        match st.call(SimOp::Sync) {
            None => {}
            Some(FaultKind::SyncLosesData) => {
                let inode = st.inodes.get_mut(&self.ino).expect("inode");
                inode.unsynced.clear();
                return Err(eio());
            }
            Some(FaultKind::Enospc) => return Err(enospc()),
            Some(FaultKind::Eio) => return Err(eio()),
        }
        let inode = st.inodes.get_mut(&self.ino).expect("inode");
        if inode.unsynced.is_empty() && inode.durable.len() == inode.data.len() {
            return Ok(());
        }
        // Only the written ranges become durable: bytes a failed fsync
        // "forgot" stay as they were on disk.
        let old = std::mem::take(&mut inode.durable);
        let mut durable = old.clone();
        durable.resize(inode.data.len(), 0);
        let common = old.len().min(inode.data.len());
        durable[..common].copy_from_slice(&old[..common]);
        for (offset, len) in std::mem::take(&mut inode.unsynced) {
            let (start, end) = (offset as usize, (offset + len) as usize);
            let end = end.min(inode.data.len());
            if start < end {
                durable[start..end].copy_from_slice(&inode.data[start..end]);
            }
        }
        inode.durable = durable;
        Ok(())
    }

    fn sync_and_evict_cache(&self) -> io::Result<()> {
        self.sync_data()?;
        // Reads now see the device: bytes a failed fsync "forgot" are gone.
        let mut st = self.fs.state.lock();
        let inode = st.inodes.get_mut(&self.ino).expect("inode");
        inode.data = inode.durable.clone();
        Ok(())
    }

    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.fs.state.lock().inodes[&self.ino].data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.fs.state.lock();
        st.fail(SimOp::SetLen)?;
        st.check_space(self.ino, len)?;
        let inode = st.inodes.get_mut(&self.ino).expect("inode");
        let old_len = inode.data.len() as u64;
        inode.data.resize(len as usize, 0);
        if len > old_len {
            inode.unsynced.push((old_len, len - old_len));
        } else {
            // A shrink is metadata: it is durable once the file is synced.
            inode.unsynced.retain(|&(offset, _)| offset < len);
            inode.unsynced.push((len, 0));
        }
        Ok(())
    }

    fn map_range(&self, offset: u64, len: u64) -> io::Result<Arc<[u8]>> {
        let mut st = self.fs.state.lock();
        st.fail(SimOp::Map)?;
        let data = &st.inodes[&self.ino].data;
        let start = (offset as usize).min(data.len());
        let end = (offset + len).min(data.len() as u64) as usize;
        Ok(Arc::from(&data[start..end]))
    }

    fn map(&self, len: u64) -> io::Result<Arc<[u8]>> {
        let mut st = self.fs.state.lock();
        st.fail(SimOp::Map)?;
        let data = &st.inodes[&self.ino].data;
        let len = (len as usize).min(data.len());
        Ok(Arc::from(&data[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> PathBuf {
        Path::new("/d").join(name)
    }

    #[test]
    fn unsynced_writes_and_names_vanish_on_power_loss() {
        let fs = SimFs::new();
        let f = fs.create_new(&p("a")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        let after = fs.crash(CrashMode::DropUnsynced);
        assert!(after.read_file(&p("a")).is_none(), "name was never made durable");
        fs.sync_dir(Path::new("/d")).unwrap();
        f.write_all_at(b"world", 5).unwrap();
        let after = fs.crash(CrashMode::DropUnsynced);
        assert_eq!(after.read_file(&p("a")).unwrap(), b"hello");
        let after = fs.crash(CrashMode::KeepUnsynced);
        assert_eq!(after.read_file(&p("a")).unwrap(), b"helloworld");
    }

    #[test]
    fn a_failed_fsync_can_lose_data_and_the_next_one_lies() {
        let fs = SimFs::new();
        let f = fs.create_new(&p("a")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        f.write_all_at(b"data", 0).unwrap();
        fs.inject(Fault { at_call: 1, kind: FaultKind::SyncLosesData, persistent: false, only: Some(SimOp::Sync) });
        assert!(f.sync_data().is_err());
        assert!(f.sync_data().is_ok(), "the retried fsync reports success");
        let after = fs.crash(CrashMode::DropUnsynced);
        assert_eq!(after.read_file(&p("a")).unwrap(), vec![0u8; 4], "yet the data is gone");
    }

    #[test]
    fn space_limit_gives_enospc() {
        let fs = SimFs::new();
        fs.set_space_limit(Some(8));
        let f = fs.create_new(&p("a")).unwrap();
        f.write_all_at(b"12345678", 0).unwrap();
        let err = f.write_all_at(b"9", 8).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
    }

    /// A crash after an unsynced rename keeps the file under one name or
    /// the other, whatever prefix of the directory operations survives.
    #[test]
    fn a_torn_crash_keeps_a_renamed_file_under_one_of_its_names() {
        let fs = SimFs::new();
        for name in ["a", "b"] {
            let f = fs.create_new(&p(name)).unwrap();
            f.write_all_at(name.as_bytes(), 0).unwrap();
            f.sync_data().unwrap();
        }
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.rename(&p("a"), &p("a.moved")).unwrap();
        fs.rename(&p("b"), &p("b.moved")).unwrap();
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let after = fs.crash(CrashMode::Tear { seed });
            for name in ["a", "b"] {
                let old = after.read_file(&p(name));
                let new = after.read_file(&p(&format!("{name}.moved")));
                assert!(old.is_some() != new.is_some(), "seed {seed}: {name} under exactly one name");
                assert_eq!(old.or(new).unwrap(), name.as_bytes());
            }
            seen.insert(
                after.read_file(&p("a.moved")).is_some() as u8 + after.read_file(&p("b.moved")).is_some() as u8,
            );
        }
        assert_eq!(seen.len(), 3, "the seeds keep none, one and both renames: {seen:?}");
    }

    #[test]
    fn tearing_touches_only_unsynced_sectors() {
        let fs = SimFs::new();
        let f = fs.create_new(&p("a")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        f.write_all_at(&[7u8; 1024], 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(&[9u8; 1024], 1024).unwrap();
        for seed in 0..32 {
            let after = fs.crash(CrashMode::Tear { seed });
            let bytes = after.read_file(&p("a")).unwrap();
            assert_eq!(&bytes[..1024], &[7u8; 1024][..], "synced bytes survive every crash");
        }
    }
}
