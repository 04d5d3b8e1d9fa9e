//! `leman bench --quick`: the suite runs end to end on small tables and
//! reports every figure of the thirteen measurements (the eighth on moto's S3
//! server, which `scripts/test` installs and names in `LEMAN_PYTHON`).

use crate::cli::{leman, ok};

#[test]
fn the_quick_suite_reports_every_figure_against_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(leman(&["bench", "--quick", "--json", "--dir", dir.path().to_str().unwrap()]));
    let figures: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    let numbers: std::collections::BTreeSet<u64> = figures.iter().map(|f| f["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=13).collect(), "{out}");
    assert_eq!(figures.len(), 25, "{out}");
    for figure in &figures {
        let ratio = figure["ratio"].as_f64().unwrap();
        assert!(ratio.is_finite() && ratio > 0.0, "{figure}");
        for field in ["what", "measured", "baseline", "ratio_of", "target"] {
            assert!(!figure[field].as_str().unwrap().is_empty(), "{field} of {figure}");
        }
        assert!(figure["met"].is_boolean(), "{figure}");
    }
    // The suite leaves nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
