//! Weight snapshots along a run (`[train] snapshot_every`), for checkpoint averaging
//! (`exporter average --run`): `snapshots/u{update}/` holds the model's config and weights only,
//! with no optimizer state, so keeping a few costs a fraction of a checkpoint each.

use std::path::{Path, PathBuf};

use crate::{TrainError, TrainableModel};

const SNAPSHOTS: &str = "snapshots";

/// A run's snapshots, oldest first: `(update, folder)`.
pub fn snapshots(run: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run.join(SNAPSHOTS)) else { return Vec::new() };
    let mut found: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let update = name.to_str()?.strip_prefix('u')?.parse::<i64>().ok()?;
            entry.path().is_dir().then(|| (update, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// Writes `snapshots/u{update}/` whole (a `.tmp` folder renamed into place), then removes the
/// oldest beyond `keep` (0 keeps all).
pub(crate) fn write(run: &Path, model: &dyn TrainableModel, update: i64, keep: usize) -> Result<(), TrainError> {
    let root = run.join(SNAPSHOTS);
    let (tmp, done) = (root.join(format!(".u{update}.tmp")), root.join(format!("u{update}")));
    for stale in [&tmp, &done] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| TrainError::io(stale, e))?;
        }
    }
    model.save_to(&tmp).map_err(TrainError::Snapshot)?;
    std::fs::rename(&tmp, &done).map_err(|e| TrainError::io(&tmp, e))?;
    let all = snapshots(run);
    if keep > 0 && all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            std::fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
        }
    }
    Ok(())
}

/// Removes the snapshots taken after `update`: a run resuming from the checkpoint at `update`
/// redoes those updates, so they belong to a training that no longer exists (and, if the
/// config changed in between, would differ from the ones it writes). Half-written ones
/// (`.u{N}.tmp`, left by a kill mid-write) go too.
pub(crate) fn drop_after(run: &Path, update: i64) -> Result<(), TrainError> {
    let half_written: Vec<PathBuf> = std::fs::read_dir(run.join(SNAPSHOTS))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(|n| n.starts_with(".u") && n.ends_with(".tmp")))
        .map(|entry| entry.path())
        .collect();
    let later = snapshots(run).into_iter().filter(|&(taken, _)| taken > update).map(|(_, dir)| dir);
    for dir in half_written.into_iter().chain(later) {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    Ok(())
}
