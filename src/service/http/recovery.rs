//! Start-up recovery: what became of the uploads of a run that died (crash, `kill -9`, power
//! loss), decided once, before the loop runs and before any `listening` line is printed.
//!
//! A dead run's dir holds, per task, what the task thread had got to (see `upload_dir.rs` for
//! the layout and `store.rs` for the order of the steps). Each leftover task is settled so that
//! it ends with exactly one line in one of the two logs:
//!
//! | found in the dead run's dir | meaning | recovery |
//! |---|---|---|
//! | the task already has a line in a log | it ended; only the clean-up was cut short | remove its files |
//! | `T.part` and a whole `T.sealed`, bytes and SHA-256 matching | the body was complete and fsynced: it may have been answered `202` | store it: link it under a free name (or find the link made before the crash), log it in `uploads.jsonl` |
//! | `T.part` and a whole `T.sealed` that do not match | the disk lost or changed bytes after the fsync | fail it: "does not match its seal" |
//! | `T.part` without a whole `T.sealed` | the body was still arriving: never answered `202` | fail it: "interrupted after N bytes" |
//! | `T.sealed` alone | stored, logged and its `.part` removed, but its log line is gone (the log was rotated by hand) | remove it |
//!
//! A task whose files cannot be read or settled (an IO error) is left as it is, with a warning,
//! for the next start-up; the server starts all the same.

use super::upload_dir::{
    done_line, failed_line, hex, DeadRun, Locked, Record, Seal, TaskId, UploadDir, LOG_TARGET,
};
use crate::codec::escape::escaped;
use hmac_sha256::Hash as Sha256;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What one start-up's recovery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Dead runs whose dirs were settled and removed.
    pub runs: usize,
    /// Uploads stored (and logged as done) on behalf of a dead run.
    pub stored: usize,
    /// Uploads logged as failed on behalf of a dead run.
    pub failed: usize,
    /// Highest task id seen in a dead run's dir (0 if none).
    pub max_task: TaskId,
}

/// Settles every dead run in `dir`. The caller holds `.upload-lock` (`locked`), so no other
/// process is recovering, appending, or creating its run dir meanwhile.
pub fn recover_dead_runs(dir: &UploadDir, locked: &mut Locked<'_>) -> io::Result<Recovered> {
    let mut done = Recovered::default();
    // Tasks that have a line in a log: read in full, once, the first time a dead run has files.
    let mut ended: Option<HashSet<TaskId>> = None;
    for path in dir.run_dirs()? {
        let Some(run) = DeadRun::claim(path.clone())? else {
            log::debug!(target: LOG_TARGET, "kept {}: its process is alive (it holds the lock)", path.display());
            continue;
        };
        let tasks = run.tasks()?;
        if !tasks.is_empty() && ended.is_none() {
            ended = Some(dir.all_records()?.iter().map(Record::task).collect());
        }
        let ended = ended.get_or_insert_with(HashSet::new);
        let mut settled_all = true;
        for task in tasks {
            done.max_task = done.max_task.max(task);
            match settle(dir, locked, &run, task, ended) {
                Ok(Settled::Cleaned) => {}
                Ok(Settled::Stored) => done.stored += 1,
                Ok(Settled::Failed) => done.failed += 1,
                Err(e) => {
                    settled_all = false;
                    log::warn!(target: LOG_TARGET, "task {task} of {}: left for the next start-up: {}", run.path().display(), escaped(&e.to_string()));
                }
            }
            ended.insert(task);
        }
        if settled_all {
            let shown = run.path().display().to_string();
            match run.remove() {
                Ok(()) => done.runs += 1,
                Err(e) => log::warn!(target: LOG_TARGET, "kept {shown}: {e}"),
            }
        }
    }
    if done.runs > 0 {
        dir.sync()?;
        log::info!(target: LOG_TARGET,
            "recovered {} stopped run(s) in {}: {} upload(s) stored, {} failed",
            done.runs, dir.path().display(), done.stored, done.failed);
    }
    Ok(done)
}

enum Settled {
    /// The task had ended; its leftovers were removed.
    Cleaned,
    Stored,
    Failed,
}

fn settle(
    dir: &UploadDir,
    locked: &mut Locked<'_>,
    run: &DeadRun,
    task: TaskId,
    ended: &HashSet<TaskId>,
) -> io::Result<Settled> {
    let (part, seal_path) = (run.part(task), run.seal(task));
    if ended.contains(&task) {
        remove_if_there(&part)?;
        remove_if_there(&seal_path)?;
        return Ok(Settled::Cleaned);
    }
    let seal = Seal::read(&seal_path)?;
    let part_meta = match fs::metadata(&part) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let outcome = match (seal, part_meta) {
        (Some(seal), Some(meta)) => {
            let (bytes, sha256) = hash_file(&part)?;
            if bytes == seal.bytes && sha256 == seal.sha256 {
                // A link count above one means the crash came after the link: find that name
                // rather than store the file twice.
                let linked = if meta.nlink() > 1 {
                    dir.find_link(&meta)?
                } else {
                    None
                };
                let stored = match linked {
                    Some(name) => name,
                    None => dir
                        .link_unique(&part, &seal.name)
                        .map_err(io::Error::other)?,
                };
                dir.sync()?;
                locked.append_done(&done_line(task, &stored, &seal.original, bytes, &sha256))?;
                log::info!(target: LOG_TARGET, "task {task}: recovered, stored as {} ({bytes} bytes)",
                    escaped(&stored));
                Settled::Stored
            } else {
                let why = format!(
                    "recovery: the saved body ({bytes} bytes) does not match its seal ({} bytes, sha256 {})",
                    seal.bytes, seal.sha256
                );
                locked.append_failed(&failed_line(
                    task,
                    &seal.name,
                    &seal.original,
                    bytes,
                    &why,
                ))?;
                log::warn!(target: LOG_TARGET, "task {task}: {why}");
                Settled::Failed
            }
        }
        (None, Some(meta)) => {
            let why = format!(
                "interrupted: the server stopped after receiving {} bytes, before the body was complete",
                meta.len()
            );
            locked.append_failed(&failed_line(task, "", "", meta.len(), &why))?;
            log::info!(target: LOG_TARGET, "task {task}: {why}");
            Settled::Failed
        }
        (Some(_), None) => {
            log::warn!(target: LOG_TARGET, "task {task}: sealed and its body already removed, but no log has it (rotated?)");
            Settled::Cleaned
        }
        (None, None) => Settled::Cleaned,
    };
    // The line is in a log: only now may the files go (the .part first: a .sealed alone
    // means "ended").
    remove_if_there(&part)?;
    remove_if_there(&seal_path)?;
    Ok(outcome)
}

/// The length and SHA-256 of a file, read in 64 KiB blocks.
fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
