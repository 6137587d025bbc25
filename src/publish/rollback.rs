//! `rollback DEST [--to N|publication:N|snapshot:N]`: flip DEST back to a retained tree through
//! the same switch as a publish (one rename; the publication row first).

use super::*;

/// Flip DEST back to a retained tree (one rename).
pub fn rollback(vault: &mut Vault, opts: &RollbackOptions) -> Result<PublishReport> {
    let started = Instant::now();
    let dest = dest::resolve(&opts.dest).map_err(|e| not_published(e, &opts.dest))?;
    dest::refuse_in_store(&vault.layout, &dest)?;
    let _locks = lock_dest(vault, &dest, "rollback")?;
    let trees = dest::trees_dir(&vault.layout)?;
    let not_pub = || Error::NotPublished { dest: dest.clone() };
    let State::Link(target) = dest::inspect(&dest)? else {
        return Err(not_pub());
    };
    let name = dest::tree_name(&dest, &target, &trees).ok_or_else(not_pub)?;
    let cat = &vault.catalog;
    let live = cat.tree_by_name(&name)?.ok_or_else(not_pub)?;
    let dkey = dest_key(&dest);
    let live_pub = cat.latest_publication_with_tree(&dkey, live.id)?;
    let target_pub = match &opts.to {
        None => cat
            .previous_publication(
                &dkey,
                live_pub.as_ref().map_or(PublicationId(i64::MAX), |p| p.id),
                live.id,
            )?
            .ok_or_else(|| Error::NothingToRollBack { dest: dest.clone() })?,
        Some(spec) => resolve_to(vault, &dest, &dkey, spec)?,
    };
    let target_tree = cat.tree_by_id(target_pub.tree_id)?;
    let gone = || Error::TreeGone {
        publication: target_pub.id,
        tree: trees.join(&target_pub.tree),
    };
    let target_tree = target_tree.ok_or_else(gone)?;
    let tree_path = trees.join(&target_tree.name);
    if !tree_path.is_dir() {
        return Err(gone());
    }
    let snap = vault.catalog.snapshot(target_tree.snapshot_id)?;
    let mut report = PublishReport {
        publication: live_pub.as_ref().map_or(PublicationId(0), |p| p.id),
        action: PublicationAction::Rollback,
        dest: dest.clone(),
        snapshot: snap.id,
        source: snap.source.clone(),
        inputs: vault.catalog.tree_input_sources(&target_tree)?,
        tree: target_tree.name.clone(),
        tree_path: tree_path.clone(),
        tree_reused: true,
        mode: target_tree.mode,
        signer: target_tree.signer.clone(),
        keyring: None,
        key_created: false,
        warnings: Vec::new(),
        files: target_tree.files,
        bytes: target_tree.bytes,
        grace_files: 0,
        missing: 0,
        previous: live_pub.as_ref().map(|p| p.id),
        changed: false,
        adopted: None,
        duration_ms: 0,
    };
    if target_tree.id != live.id {
        report.grace_files += grace::bridge(vault, &trees, &target_tree, &live)?;
        report.publication = switch(
            vault,
            &dkey,
            &target_tree,
            PublicationAction::Rollback,
            || flip(&dest, &tree_path),
        )?;
        report.changed = true;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// `N`, `publication:N` or `snapshot:N` on DEST.
fn resolve_to(vault: &Vault, dest: &Path, dkey: &str, spec: &str) -> Result<Publication> {
    let unknown = || Error::UnknownPublication {
        dest: dest.to_path_buf(),
        spec: spec.to_string(),
    };
    let (kind, num) = match spec.split_once(':') {
        Some((k, n)) => (k, n),
        None => ("publication", spec),
    };
    let n: i64 = num.parse().map_err(|_| unknown())?;
    let found = match kind {
        "publication" | "p" => vault
            .catalog
            .publication(PublicationId(n))?
            .filter(|p| p.dest == dkey),
        "snapshot" | "s" => vault
            .catalog
            .latest_publication_of_snapshot(dkey, SnapshotId(n))?,
        _ => None,
    };
    found.ok_or_else(unknown)
}
