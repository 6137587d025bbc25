//! `status DEST` and `publications [DEST]`: what DEST points at, whether the catalogue agrees,
//! and the history of its flips (read-only; no lock taken).

use super::*;

/// What DEST points at and whether the catalogue agrees (read-only; `vault` is `None` when the
/// store has no catalogue yet).
pub fn status(vault: Option<&Vault>, dest: &Path) -> Result<Status> {
    let dest = dest::resolve(dest).map_err(|e| not_published(e, dest))?;
    let state = dest::inspect(&dest)?;
    let link = match &state {
        State::Link(t) => Some(t.clone()),
        _ => None,
    };
    let Some(vault) = vault else {
        return Err(Error::NotPublished { dest });
    };
    let dkey = dest_key(&dest);
    let latest = vault.catalog.latest_publication(&dkey)?;
    if link.is_none() && latest.is_none() {
        return Err(Error::NotPublished { dest });
    }
    let mut st = Status {
        dest: dest.clone(),
        link: link.clone(),
        tree: None,
        inputs: Vec::new(),
        live: None,
        latest: latest.clone(),
        problems: Vec::new(),
    };
    let Some(target) = link else {
        // Detached (or otherwise handed over): every publication retired, DEST not a link.
        if latest.as_ref().is_some_and(|p| p.retired_at.is_some()) {
            return Err(Error::NotPublished { dest });
        }
        st.problems.push(format!(
            "`{}` is {}, but the catalogue records publications to it",
            dest.display(),
            match state {
                State::Absent => "missing",
                State::Directory => "a real directory",
                _ => "not a symbolic link",
            }
        ));
        return Ok(st);
    };
    let trees = dest::trees_dir(&vault.layout)?;
    let Some(name) = dest::tree_name(&dest, &target, &trees) else {
        st.problems.push(format!(
            "the link points at `{}`, which is not a tree of this store",
            target.display()
        ));
        return Ok(st);
    };
    if !trees.join(&name).is_dir() {
        st.problems.push(format!(
            "the link points at tree `{name}`, which no longer exists"
        ));
    }
    let Some(tree) = vault.catalog.tree_by_name(&name)? else {
        st.problems.push(format!(
            "the link points at tree `{name}`, which the catalogue does not record"
        ));
        return Ok(st);
    };
    st.live = vault.catalog.latest_publication_with_tree(&dkey, tree.id)?;
    st.inputs = vault.catalog.tree_input_sources(&tree)?;
    st.tree = Some(tree);
    match (&st.live, &latest) {
        (None, _) => st.problems.push(format!(
            "no publication of `{}` records the linked tree",
            dest.display()
        )),
        (Some(l), Some(n)) if l.id != n.id => st.problems.push(format!(
            "the newest publication ({}, {} of snapshot {} by {}) is not live: it was interrupted before its flip",
            n.id, n.action, n.snapshot_id, n.published_by
        )),
        _ => {}
    }
    Ok(st)
}

/// Publications (of one DEST, or all), oldest first, with `live` set from the links.
pub fn publications(vault: Option<&Vault>, dest: Option<&Path>) -> Result<Vec<Publication>> {
    let Some(vault) = vault else {
        return Ok(Vec::new());
    };
    let dkey = match dest {
        Some(d) => Some(dest_key(
            &dest::resolve(d).map_err(|e| not_published(e, d))?,
        )),
        None => None,
    };
    let mut list = vault.catalog.publications(dkey.as_deref())?;
    let trees = dest::trees_dir(&vault.layout).ok();
    let mut live: std::collections::HashMap<String, Option<PublicationId>> = Default::default();
    for p in &list {
        if live.contains_key(&p.dest) {
            continue;
        }
        let path = PathBuf::from(&p.dest);
        let linked = match (dest::inspect(&path), &trees) {
            (Ok(State::Link(t)), Some(trees)) => dest::tree_name(&path, &t, trees),
            _ => None,
        };
        let id = linked.and_then(|name| {
            list.iter()
                .filter(|q| q.dest == p.dest && q.tree == name)
                .map(|q| q.id)
                .max()
        });
        live.insert(p.dest.clone(), id);
    }
    for p in &mut list {
        p.live = live.get(&p.dest).copied().flatten() == Some(p.id);
    }
    Ok(list)
}

/// A publication with the snapshots its tree was built from (`publications --json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublicationInputs {
    #[serde(flatten)]
    pub(crate) publication: Publication,
    /// Every input snapshot of the tree (one, or a composition's, in order).
    pub(crate) inputs: Vec<TreeInput>,
}

/// [`publications`] with each one's inputs.
pub fn publications_with_inputs(
    vault: Option<&Vault>,
    dest: Option<&Path>,
) -> Result<Vec<PublicationInputs>> {
    let list = publications(vault, dest)?;
    let Some(vault) = vault else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let inputs = match vault.catalog.tree_by_id(p.tree_id)? {
            Some(t) => vault.catalog.tree_input_sources(&t)?,
            None => vec![TreeInput {
                snapshot: p.snapshot_id,
                source: p.source.clone(),
            }],
        };
        out.push(PublicationInputs {
            publication: p,
            inputs,
        });
    }
    Ok(out)
}
