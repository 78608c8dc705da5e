//! Least privilege, measured: the permission list generated from the stream declarations,
//! the README's copy of it, and the privilege probes against the simulator.

mod common;

use kandji_collector::streams::{StreamName, permissions_markdown};

/// The README's table is the generated one (regenerate with
/// `kandji-collector permissions --format markdown`).
#[test]
fn the_readme_permission_table_is_generated_from_the_streams() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let begin = "<!-- permissions:begin -->\n";
    let start = readme
        .find(begin)
        .expect("README has <!-- permissions:begin -->")
        + begin.len();
    let end = readme[start..]
        .find("<!-- permissions:end -->")
        .expect("README has <!-- permissions:end -->")
        + start;
    let want = permissions_markdown(&StreamName::ALL);
    assert_eq!(
        &readme[start..end],
        want,
        "the README's permission table is out of date; replace it with:\n{want}"
    );
}
