//! External test data lives inside the repository: the desync and JWS vectors are read from
//! `tests/vectors/` with their licence files next to them, and no test, source or bench file reads
//! from outside the checkout (a sibling `shared` folder exists on one machine only), so a bare
//! `git clone` plus `cargo test --workspace` passes anywhere.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn vectors_are_vendored_with_their_licences() {
    for f in [
        "tests/vectors/README.md",
        "tests/vectors/http-desync/LICENSE",
        "tests/vectors/http-desync/NOTICE",
        "tests/vectors/http-desync/severe.yaml",
        "tests/vectors/jwt/LICENSE-wycheproof",
        "tests/vectors/jwt/wycheproof_json_web_signature_test.json",
    ] {
        assert!(
            root().join(f).is_file(),
            "{f} is missing from the repository"
        );
    }
}

#[test]
fn nothing_reads_outside_the_checkout() {
    // Built at run time so that this file does not match itself.
    let needle = format!("../{}", "shared");
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "loadtest"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} .rs files", files.len());
    let offenders: Vec<String> = files
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(&needle)
        })
        .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "files referring to {needle}: {offenders:?}"
    );
}
