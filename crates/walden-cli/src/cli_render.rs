//! Human-readable output of the recovery commands. Everything printed here
//! comes from a `walden::admin` result; nothing is computed but layout.

use std::io::{self, Write};
use std::path::Path;
use walden::admin::{
    hex, store_op, CompactPlan, DryRun, Examination, JournalCompactPlan, JournalDumpRecord, JournalRecord, LogContent,
    LogRecordView, LogStats, PointInTime, PrunePlan, RefusedRecord, RepairPlan, SegmentEnd, Severity, SnapshotReport,
    SnapshotState, SnapshotsReport,
};
use walden::store::KvState;
use walden::WalRecoveryReport;

fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// `1.5 KiB`, `64.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn age(now_us: u64, then_us: u64) -> String {
    let secs = now_us.saturating_sub(then_us) / 1_000_000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

pub fn time(us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_micros(t).to_string()
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Notice => "notice",
        Severity::Recoverable => "recoverable",
        Severity::Corrupt => "CORRUPT",
        _ => "other",
    }
}

fn segment_state(end: &SegmentEnd, active: bool) -> String {
    let kind = if active { "active" } else { "sealed" };
    match end {
        SegmentEnd::Clean => kind.to_owned(),
        SegmentEnd::TornTail { offset, lsn, bytes: b, .. } => {
            format!("{kind}, torn tail at offset {offset} (LSN {lsn}, {})", bytes(*b))
        }
        SegmentEnd::Corrupt { offset, lsn, .. } => format!("{kind}, CORRUPT at offset {offset} (LSN {lsn})"),
        SegmentEnd::BadHeader { .. } => format!("{kind}, BAD HEADER"),
        SegmentEnd::Unsupported { offset, .. } => format!("{kind}, newer format at offset {offset}"),
        other => format!("{kind}, {other:?}"),
    }
}

pub fn inspect(out: &mut dyn Write, e: &Examination, now_us: u64) -> io::Result<()> {
    let layout = if e.dir.snapshot_dir.is_some() { "store or engine: wal/ and snapshots/" } else { "bare log" };
    writeln!(out, "directory    {} ({layout})", e.dir.root.display())?;
    if let Some(id) = e.log.log_id {
        writeln!(out, "log id       {id:#018x}")?;
    }
    writeln!(out, "segments     {}", e.log.segments.len())?;
    if !e.log.segments.is_empty() {
        writeln!(
            out,
            "  {:<28} {:>10} {:>10} {:>9} {:>10}  state",
            "file", "first LSN", "last LSN", "records", "size"
        )?;
    }
    for s in &e.log.segments {
        writeln!(
            out,
            "  {:<28} {:>10} {:>10} {:>9} {:>10}  {}",
            name(&s.path),
            s.first_lsn.0,
            s.last_lsn.0,
            s.records,
            bytes(s.file_bytes),
            segment_state(&s.end, s.active)
        )?;
    }
    if e.dir.snapshot_dir.is_some() {
        writeln!(out, "snapshots    {}", e.snapshots.snapshots.len())?;
        snapshot_rows(out, &e.snapshots, now_us)?;
    }
    let (from, to) = (e.recoverable_from_lsn, e.recoverable_to_lsn);
    writeln!(out, "recoverable  states as of LSN {from} to LSN {to}")?;
    let options = e.options_recorded.as_deref().unwrap_or("not recorded (walden does not store them in the directory)");
    writeln!(out, "options      {options}")?;
    for f in e.findings.iter().filter(|f| f.severity == Severity::Notice) {
        writeln!(out, "notice       {}: {}", name(&f.file), f.what)?;
    }
    writeln!(out, "verdict      {}", e.verdict)
}

fn snapshot_rows(out: &mut dyn Write, snaps: &SnapshotsReport, now_us: u64) -> io::Result<()> {
    if !snaps.snapshots.is_empty() {
        writeln!(
            out,
            "  {:<36} {:>10} {:>9} {:>10} {:>6} {:>9}  state",
            "file", "LSN", "entries", "size", "ratio", "age"
        )?;
    }
    for s in &snaps.snapshots {
        writeln!(
            out,
            "  {:<36} {:>10} {:>9} {:>10} {:>6} {:>9}  {}",
            name(&s.path),
            s.lsn.0,
            s.entries.map_or("-".into(), |n| n.to_string()),
            s.file_bytes.map_or("-".into(), bytes),
            s.compression_ratio.map_or("-".into(), |r| format!("{r:.1}x")),
            s.created_unix_us.map_or("-".into(), |c| age(now_us, c)),
            snapshot_state(s, snaps.newest_usable)
        )?;
    }
    for t in &snaps.temporary {
        writeln!(out, "  {:<36} leftover temporary file (removed at the next open)", name(t))?;
    }
    Ok(())
}

fn snapshot_state(s: &SnapshotReport, newest_usable: Option<walden::Lsn>) -> String {
    if let Some(why) = &s.refused {
        return format!("NOT THIS STORE'S: {why}");
    }
    match (&s.state, &s.unusable) {
        (SnapshotState::Bad { reason }, _) => format!("BAD: {reason}"),
        (SnapshotState::Good { .. }, Some(why)) => format!("good, unusable: {why}"),
        (SnapshotState::Good { .. }, None) if newest_usable == Some(s.lsn) => "good, recovery starts here".into(),
        (SnapshotState::Good { .. }, None) => "good".into(),
        (other, _) => format!("{other:?}"),
    }
}

pub fn snapshots(out: &mut dyn Write, snaps: &SnapshotsReport, now_us: u64) -> io::Result<()> {
    snapshot_rows(out, snaps, now_us)
}

pub fn verify(out: &mut dyn Write, e: &Examination) -> io::Result<()> {
    writeln!(
        out,
        "checked {} records in {} segments ({}) and {} snapshots",
        e.stats.records,
        e.stats.segments,
        bytes(e.log.bytes_scanned),
        e.snapshots.snapshots.len()
    )?;
    for f in &e.findings {
        let place = match (f.offset, f.lsn) {
            (Some(o), Some(l)) => format!(" offset {o} LSN {l}"),
            (Some(o), None) => format!(" offset {o}"),
            (None, Some(l)) => format!(" LSN {l}"),
            (None, None) => String::new(),
        };
        writeln!(out, "{:<12} {}{place}: {}", severity(f.severity), f.file.display(), f.what)?;
    }
    writeln!(out, "verdict: {}", e.verdict)?;
    writeln!(
        out,
        "(verify checks bytes and checksums, not what the records mean: `walden recover` replays them into the \
         state machine and names any record it refuses)"
    )
}

pub fn stats(out: &mut dyn Write, s: &LogStats) -> io::Result<()> {
    writeln!(out, "segments            {}", s.segments)?;
    writeln!(out, "records             {}", s.records)?;
    writeln!(out, "payload bytes       {} ({})", s.payload_bytes, bytes(s.payload_bytes))?;
    writeln!(out, "record bytes        {} ({}, framed)", s.record_bytes, bytes(s.record_bytes))?;
    writeln!(out, "file bytes          {} ({}, preallocation included)", s.file_bytes, bytes(s.file_bytes))?;
    writeln!(out, "average payload     {:.1} B", s.average_payload_bytes)?;
    if let (Some(a), Some(b)) = (s.first_timestamp_us, s.last_timestamp_us) {
        writeln!(out, "time span           {} .. {} ({:.3} s)", time(a), time(b), (b - a) as f64 / 1e6)?;
    }
    if let Some(rate) = s.records_per_second {
        writeln!(out, "records per second  {rate:.0} (over the time span)")?;
    }
    Ok(())
}

pub fn record_text(out: &mut dyn Write, r: &LogRecordView<'_>) -> io::Result<()> {
    let batch = if r.header.batch_continues() { " batch+" } else { "" };
    write!(out, "{} {}@{} {}B{batch}", r.lsn, name(r.file), r.offset, r.payload.len())?;
    match store_op(r.payload) {
        Some(op) => {
            let key = op.key.map_or_else(|| format!("0x{}", op.key_hex.unwrap_or_default()), |k| format!("{k:?}"));
            write!(out, " {} {key}", op.op)?;
            if let Some(v) = op.value {
                write!(out, " = {v:?}")?;
            } else if let Some(v) = op.value_hex {
                write!(out, " = 0x{v}")?;
            }
            writeln!(out, " by {} at {}", op.writer, time(op.timestamp_us))
        }
        None => writeln!(out, " {:?}", String::from_utf8_lossy(r.payload)),
    }
}

/// The fields of every dumped record, a store's or a journal's, plus `extra`.
fn record_json_with(
    out: &mut dyn Write,
    r: &LogRecordView<'_>,
    extra: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
) -> io::Result<()> {
    let mut value = serde_json::json!({
        "lsn": r.lsn,
        "file": r.file,
        "offset": r.offset,
        "payload_bytes": r.payload.len(),
        "frame_bytes": r.frame.len(),
        "batch_continues": r.header.batch_continues(),
        "durable_watermark": r.header.durable_watermark,
        "payload_hex": hex(r.payload),
    });
    for (key, field) in extra {
        value[key] = field;
    }
    serde_json::to_writer(&mut *out, &value)?;
    writeln!(out)
}

pub fn record_json(out: &mut dyn Write, r: &LogRecordView<'_>) -> io::Result<()> {
    record_json_with(out, r, [("store_op", serde_json::json!(store_op(r.payload)))])
}

/// One line per journal record: where it is, then the entry's fields.
pub fn journal_text(out: &mut dyn Write, j: &JournalDumpRecord<'_>) -> io::Result<()> {
    let r = &j.record;
    let batch = if r.header.batch_continues() { " batch+" } else { "" };
    write!(out, "{} {}@{} {}B{batch}", r.lsn, name(r.file), r.offset, r.payload.len())?;
    match &j.journal {
        Some(JournalRecord::Entry(e)) => {
            write!(out, " #{} {} {} {} {}", e.sequence, time(e.timestamp_us), e.op, e.signal_type, e.address)?;
            if e.op != "DELETE" {
                write!(out, " = {}", e.value_text)?;
            }
            if let Some(revision) = e.revision {
                write!(out, " rev {revision}")?;
            }
            let compacted = if j.compacted { " [compacted]" } else { "" };
            writeln!(out, " by {}{compacted}", e.author)
        }
        Some(JournalRecord::Floor { first_kept, timestamp_us }) => {
            writeln!(out, " FLOOR entries below #{first_kept} compacted at {}", time(*timestamp_us))
        }
        Some(other) => writeln!(out, " {other:?}"),
        None => writeln!(out, " not a journal record: {:?}", String::from_utf8_lossy(r.payload)),
    }
}

pub fn journal_json(out: &mut dyn Write, j: &JournalDumpRecord<'_>) -> io::Result<()> {
    let extra = [("journal", serde_json::json!(j.journal)), ("compacted", serde_json::json!(j.compacted))];
    record_json_with(out, &j.record, extra)
}

pub fn journal_compact(out: &mut dyn Write, c: &JournalCompactPlan) -> io::Result<()> {
    let verb = if c.applied { "removed" } else { "would remove" };
    let range = match c.removed_entries {
        0 => String::new(),
        _ => format!(" (sequences {}..={})", c.first_sequence_before, c.first_kept - 1),
    };
    writeln!(out, "{verb} {} journal entries{range} older than {}", c.removed_entries, time(c.cutoff_us))?;
    writeln!(out, "held after: {} entries (sequence {}..={})", c.held_after, c.first_kept, c.latest_sequence)?;
    if let (Some(before), Some(after)) = (c.log_first_lsn_before, c.log_first_lsn_after) {
        writeln!(
            out,
            "the log starts at LSN {after} (was {before}): a segment leaves the disk once no kept snapshot needs it"
        )?;
    }
    if !c.applied && c.removed_entries > 0 {
        writeln!(out, "dry run: nothing was changed; run again with --apply to do it")?;
    }
    Ok(())
}

pub fn record_hex(out: &mut dyn Write, r: &LogRecordView<'_>) -> io::Result<()> {
    writeln!(out, "{} {}@{} {}", r.lsn, name(r.file), r.offset, hex(r.frame))
}

pub fn dry_run(out: &mut dyn Write, d: &DryRun, dir: &Path) -> io::Result<()> {
    writeln!(out, "dry run of an open in {:?} mode; nothing was changed", d.plan.mode)?;
    for c in &d.plan.cuts {
        let what = if c.whole_segment { "would move aside the whole segment" } else { "would cut" };
        writeln!(
            out,
            "  {what} {}: {} from offset {} (LSN {} on): {}",
            c.file.display(),
            bytes(c.bytes),
            c.offset,
            c.lsn,
            c.reason
        )?;
    }
    if let Some(r) = &d.report {
        match &r.snapshot_used {
            Some(p) => writeln!(out, "  snapshot used      {} (LSN {})", p.display(), r.snapshot_lsn)?,
            None if d.refused.is_none() => {
                writeln!(out, "  snapshot used      none: the log is replayed from its start")?
            }
            None => {}
        }
        for (p, why) in &r.snapshots_skipped {
            writeln!(out, "  snapshot skipped   {}: {why}", p.display())?;
        }
        writeln!(out, "  records replayed   {}", r.records_replayed)?;
        writeln!(out, "  bytes read         {}", bytes(r.bytes_read))?;
        writeln!(out, "  bytes cut          {}", r.bytes_cut)?;
        writeln!(out, "  temporary files    {} would be removed", r.temporary_files_removed)?;
    } else {
        writeln!(out, "  records kept       {} (LSN {}..={})", d.plan.records, d.plan.first_lsn, d.plan.last_lsn)?;
    }
    match &d.refused {
        Some(why) => writeln!(out, "the open would FAIL: {why}")?,
        None => writeln!(out, "the open would succeed at LSN {}", d.applied_lsn)?,
    }
    if let Some(r) = &d.refused_record {
        refused_record(out, r, d.content, dir)?;
    }
    Ok(())
}

/// Where the refused record is, why, and the two ways out.
fn refused_record(out: &mut dyn Write, r: &RefusedRecord, content: Option<LogContent>, dir: &Path) -> io::Result<()> {
    let machine = match content {
        Some(LogContent::Journal) => "the journal",
        Some(LogContent::Other) => "the store (its first record is neither a store operation nor a journal entry)",
        _ => "the store",
    };
    writeln!(out, "  refused record     {} offset {} (LSN {})", r.file.display(), r.offset, r.lsn)?;
    writeln!(out, "  reason             {}", r.reason)?;
    writeln!(
        out,
        "the log itself is intact (every record reads, every checksum holds): {machine} refuses this record."
    )?;
    writeln!(out, "What can be done:")?;
    writeln!(out, "  - open the directory with the program that wrote the record (another state machine, or the")?;
    writeln!(out, "    version whose rules accepted it); nothing needs to change;")?;
    let (from, count) = (r.cut_from, r.records_from_cut);
    let batch = if from == r.lsn { "" } else { ", where its batch starts (a batch goes whole)" };
    let records = if count == 1 { "record" } else { "records" };
    writeln!(out, "  - or move LSN {from}{batch} and every later record aside, {count} {records} in all, into synced")?;
    writeln!(out, "    *.quarantine-* files (nothing is deleted); the directory then opens at LSN {}:", from.0 - 1)?;
    let d = dir.display();
    writeln!(out, "      walden repair {d} --cut-from {from}           # prints the plan, changes nothing")?;
    writeln!(out, "      walden repair {d} --cut-from {from} --apply")
}

pub fn point_in_time(out: &mut dyn Write, p: &PointInTime) -> io::Result<()> {
    let from = p.snapshot_used.as_ref().map_or("the log's start".into(), |s| s.display().to_string());
    writeln!(out, "state as of LSN {}: from {from}, {} records replayed", p.lsn, p.records_replayed)?;
    if let Some(info) = &p.written {
        writeln!(out, "wrote {} ({}, {} entries)", info.path.display(), bytes(info.file_bytes), info.header.entries)?;
    }
    Ok(())
}

pub fn repair_plan(out: &mut dyn Write, r: &RepairPlan, asked_to_apply: bool) -> io::Result<()> {
    if let (Some(from), Some(why)) = (r.cut_from, &r.cut_refused) {
        return writeln!(out, "cannot cut from LSN {from}: {why}");
    }
    if let Some(why) = &r.plan.refused {
        writeln!(out, "cannot repair {} at offset {} (LSN {}): {}", why.file.display(), why.offset, why.lsn, why.what)?;
        if !r.salvage {
            writeln!(
                out,
                "this is not a torn tail; --salvage keeps LSNs up to {} and moves the rest aside",
                r.plan.last_lsn
            )?;
        }
        return Ok(());
    }
    if !r.needed() {
        return writeln!(out, "nothing to repair: LSN {}..={} read cleanly", r.plan.first_lsn, r.plan.last_lsn);
    }
    for c in &r.plan.cuts {
        let what = if c.whole_segment { "move aside" } else { "cut" };
        writeln!(
            out,
            "would {what} {}: {} from offset {} (LSN {} on): {}",
            c.file.display(),
            bytes(c.bytes),
            c.offset,
            c.lsn,
            c.reason
        )?;
    }
    let records = if r.records_cut == 1 { "record" } else { "records" };
    writeln!(
        out,
        "{} {records} and {} in all would move into synced quarantine files beside their segments; nothing is deleted",
        r.records_cut,
        bytes(r.plan.bytes_cut())
    )?;
    writeln!(out, "the log would keep LSN {}..={}", r.plan.first_lsn, r.plan.last_lsn)?;
    if !asked_to_apply {
        writeln!(out, "dry run: nothing was changed; run again with --apply to do it")?;
    }
    Ok(())
}

pub fn repair_done(out: &mut dyn Write, r: &WalRecoveryReport) -> io::Result<()> {
    for c in &r.cuts {
        writeln!(
            out,
            "moved {} bytes of {} from offset {} (LSN {} on) into {}",
            c.bytes,
            c.file.display(),
            c.offset,
            c.lsn,
            c.quarantine.display()
        )?;
    }
    writeln!(out, "repaired: the log holds LSN {}..={} in {} segments, synced", r.first_lsn, r.last_lsn, r.segments)
}

pub fn prune(out: &mut dyn Write, p: &PrunePlan, applied: bool) -> io::Result<()> {
    let verb = if applied { "removed" } else { "would remove" };
    for path in &p.remove {
        writeln!(out, "{verb} {}", path.display())?;
    }
    for path in &p.left_alone {
        writeln!(out, "left alone (bad): {}", path.display())?;
    }
    if p.remove.is_empty() {
        writeln!(out, "nothing to prune: at most {} good snapshots", p.keep)?;
    } else if !applied {
        writeln!(out, "dry run: nothing was changed; run again with --apply to do it")?;
    }
    Ok(())
}

pub fn compact(out: &mut dyn Write, c: &CompactPlan, applied: bool) -> io::Result<()> {
    if let Some(why) = &c.refused {
        return writeln!(out, "cannot compact: {why}");
    }
    if let Some(limit) = c.limit {
        if limit < c.requested_before {
            writeln!(out, "limited to LSN {limit}: the oldest good snapshot needs the log from there")?;
        }
    }
    let verb = if applied { "removed" } else { "would remove" };
    for r in &c.remove {
        writeln!(out, "{verb} {} (LSN {}..={}, {})", r.file.display(), r.first_lsn, r.last_lsn, bytes(r.bytes))?;
    }
    if c.remove.is_empty() {
        writeln!(out, "nothing to remove below LSN {}", c.effective_before)?;
    } else if !applied {
        writeln!(out, "dry run: nothing was changed; run again with --apply to do it")?;
    }
    Ok(())
}

/// One JSON document: the snapshot's header, then its entries in key order.
pub fn export(out: &mut dyn Write, s: &SnapshotReport, state: &KvState) -> io::Result<()> {
    let text_or_hex = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(t) => serde_json::json!({ "text": t }),
        Err(_) => serde_json::json!({ "hex": hex(b) }),
    };
    writeln!(out, "{{\"snapshot\": {},", serde_json::json!({ "path": s.path, "lsn": s.lsn, "entries": state.len() }))?;
    writeln!(out, " \"entries\": [")?;
    for (i, (key, entry)) in state.iter().enumerate() {
        let line = serde_json::json!({
            "key": text_or_hex(key),
            "value": text_or_hex(&entry.value),
            "revision": entry.revision,
            "writer": &*entry.writer,
            "timestamp_us": entry.timestamp_us,
        });
        let comma = if i + 1 < state.len() { "," } else { "" };
        writeln!(out, "  {line}{comma}")?;
    }
    writeln!(out, " ]}}")
}
