//! `crdgen [REPO_ROOT]`: writes the CRDs generated from the operator's types
//! (`operator/src/crd.rs`, `operator/src/topic/crd.rs`) to `crds/` and
//! `charts/oxbow-operator/crds/` (the chart installs them). `cargo test -p oxbow-operator` fails while the checked-in files differ.

use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    for (name, yaml) in oxbow_operator::crd_files().context("serialising the CRDs")? {
        for dir in oxbow_operator::CRD_DIRS {
            let path = root.join(dir).join(name);
            std::fs::write(&path, &yaml).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
