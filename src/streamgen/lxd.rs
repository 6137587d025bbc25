//! The LXD-shaped stream: one products file `images` of datatype `image-downloads`, shaped like
//! images.linuxcontainers.org (and the Incus fixture `fixtures/real/incus-chr-2025`), small enough
//! for tests that run the real `lxc` client against a published tree.
//!
//! Products `os:release:arch:variant` carry `aliases`, `os`, `release`, `release_title`, `arch`
//! and `variant`; versions are named `YYYYMMDD_HH:MM` (LXD reads the date from the first eight
//! characters and skips a version without one). A split image has a `lxd.tar.xz` item (ftype
//! `lxd.tar.xz`) whose `combined_squashfs_sha256` is the sha256 of its bytes followed by those of
//! the `root.squashfs` item (ftype `squashfs`) — LXD's fingerprint of that image; a unified image
//! is one `lxd_combined.tar.gz` item whose own sha256 is the fingerprint. Every `size`, `sha256`
//! and `combined_*` field is that of the bytes written.

use std::path::Path;

use super::files::pattern_sha256;
use super::{
    Fill, GenError, ItemSpec, ProductSpec, SignFn, Summary, TreeSpec, dates, default_updated,
    fields, write_stream,
};

/// Content id of the LXD products file (as on images.linuxcontainers.org).
pub const LXD_CONTENT_ID: &str = "images";
/// The product whose versions move with the generation (the others never change).
pub const LXD_ROLLING_PRODUCT: &str = "ubuntu:jammy:amd64:default";

const META_SIZE: u64 = 868;
const ROOT_SIZE: u64 = 4096;
const COMBINED_SIZE: u64 = 3000;

/// The versions of [`LXD_ROLLING_PRODUCT`] in generation `generation`: two consecutive days,
/// starting `generation - 1` days after 2024-01-01, oldest first (the next generation adds a day
/// and drops the oldest).
pub fn lxd_rolling_versions(generation: u32) -> Vec<String> {
    let first = u64::from(generation.saturating_sub(1));
    (0..2)
        .map(|k| format!("{}_07:42", dates::day_from_2024(first + k)))
        .collect()
}

/// Build the LXD-shaped tree of generation `generation` under `out` (same rules as
/// [`super::generate`]: signed copies with `sign`, `updated` is [`default_updated`]).
///
/// Products: `ubuntu:jammy:amd64:default` (split images, versions [`lxd_rolling_versions`]),
/// `ubuntu:jammy:arm64:default` (one split image) and `alpine:3.20:amd64:default` (one unified
/// `lxd_combined.tar.gz` image).
pub fn generate_lxd(
    out: &Path,
    generation: u32,
    sign: Option<SignFn<'_>>,
) -> Result<Summary, GenError> {
    if generation == 0 {
        return Err(GenError::Generation { generation });
    }
    let products = vec![
        product(
            ("ubuntu", "jammy", "22.04", "amd64", "default"),
            "ubuntu/jammy/default,ubuntu/jammy,ubuntu/22.04",
            lxd_rolling_versions(generation)
                .into_iter()
                .map(|v| {
                    let items = split_image("ubuntu/jammy/amd64/default", &v);
                    (v, items)
                })
                .collect(),
        ),
        product(
            ("ubuntu", "jammy", "22.04", "arm64", "default"),
            "ubuntu/jammy/default,ubuntu/jammy,ubuntu/22.04",
            vec![(
                "20240101_07:42".into(),
                split_image("ubuntu/jammy/arm64/default", "20240101_07:42"),
            )],
        ),
        product(
            ("alpine", "3.20", "3.20", "amd64", "default"),
            "alpine/3.20/default,alpine/3.20",
            vec![(
                "20240101_13:00".into(),
                unified_image("alpine/3.20/amd64/default", "20240101_13:00"),
            )],
        ),
    ];
    let tree = TreeSpec {
        content_id: LXD_CONTENT_ID,
        datatype: "image-downloads",
        top: Vec::new(),
        products,
    };
    write_stream(out, &[tree], &default_updated(generation), sign)
}

fn product(
    (os, release, title, arch, variant): (&str, &str, &str, &str, &str),
    aliases: &str,
    versions: Vec<(String, Vec<ItemSpec>)>,
) -> ProductSpec {
    ProductSpec {
        name: format!("{os}:{release}:{arch}:{variant}"),
        fields: fields(&[
            ("aliases", aliases),
            ("arch", arch),
            ("os", os),
            ("release", release),
            ("release_title", title),
            ("variant", variant),
        ]),
        versions,
    }
}

/// `lxd.tar.xz` + `root.squashfs`, the fingerprint in `combined_squashfs_sha256`.
fn split_image(base: &str, version: &str) -> Vec<ItemSpec> {
    let meta = format!("images/{base}/{version}/lxd.tar.xz");
    let root = format!("images/{base}/{version}/rootfs.squashfs");
    let combined = pattern_sha256(&[(&meta, META_SIZE), (&root, ROOT_SIZE)]);
    vec![
        ItemSpec {
            name: "lxd.tar.xz".into(),
            path: meta,
            size: META_SIZE,
            fill: Fill::Pattern,
            fields: vec![
                ("ftype", "lxd.tar.xz".into()),
                ("combined_squashfs_sha256", combined),
            ],
        },
        ItemSpec {
            name: "root.squashfs".into(),
            path: root,
            size: ROOT_SIZE,
            fill: Fill::Pattern,
            fields: vec![("ftype", "squashfs".into())],
        },
    ]
}

/// One `lxd_combined.tar.gz`: metadata and root file system in one file.
fn unified_image(base: &str, version: &str) -> Vec<ItemSpec> {
    vec![ItemSpec {
        name: "lxd_combined.tar.gz".into(),
        path: format!("images/{base}/{version}/lxd_combined.tar.gz"),
        size: COMBINED_SIZE,
        fill: Fill::Pattern,
        fields: vec![("ftype", "lxd_combined.tar.gz".into())],
    }]
}
