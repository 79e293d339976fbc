//! Every public item of the SDK has a rustdoc example (which `cargo test
//! --doc` compiles and runs): check_doc_examples.py lists any that lacks
//! one.

use std::process::Command;

#[test]
fn every_public_item_has_an_example() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/check_doc_examples.py");
    let out = Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs the checker");
    assert!(
        out.status.success(),
        "public items without a doc example:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
