//! A dry run's report: the plan spelled out, one [`PlannedFetch`] per download with the names
//! of the items it serves.
//!
//! Each item is read once, straight from the selection's borrowed view (no [`super::plan::Job`]
//! with its checksums, no `format!` per name): a million-download plan is a million of these
//! (issue 13 item 5).

use super::PlannedFetch;
use super::metadata::Metadata;
use super::plan::Plan;
use super::select::Selection;

/// The downloads of `plan` as the report lists them, in plan order.
pub(super) fn planned(plan: &Plan, items: &Selection, meta: &Metadata) -> Vec<PlannedFetch> {
    // Exact capacities: a million-download plan is a million of these.
    let mut out = Vec::with_capacity(plan.len());
    for j in 0..plan.len() {
        let served = plan.items(j);
        let Some(v) = served.first().and_then(|&i| items.view(meta, i as usize)) else {
            continue;
        };
        let Some(path) = v.path else {
            continue;
        };
        let names = served
            .iter()
            .map(|&i| {
                let (_, p, v, it) = items.key(meta, i as usize);
                let mut name = String::with_capacity(p.len() + v.len() + it.len() + 2);
                for (k, part) in [p, v, it].into_iter().enumerate() {
                    if k > 0 {
                        name.push(' ');
                    }
                    name.push_str(part);
                }
                name
            })
            .collect();
        out.push(PlannedFetch {
            path: path.to_string(),
            size: v.size.unwrap_or(0),
            items: names,
        });
    }
    out
}
