//! `crdgen [REPO_ROOT]`: writes the CRDs generated from `operator/src/crd.rs` to
//! `crds/kafkacluster.yaml` and `charts/oxbow-operator/crds/kafkacluster.yaml` (the chart
//! installs them). `cargo test -p oxbow-operator` fails while the checked-in files differ.

use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let yaml = oxbow_operator::crd_yaml().context("serialising the CRD")?;
    for path in oxbow_operator::CRD_FILES {
        let path = root.join(path);
        std::fs::write(&path, &yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
