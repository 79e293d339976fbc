//! The fuzz targets' regression corpus (`fuzz/corpus/<target>/`, see
//! docs/fuzzing.md), replayed through the targets' own bodies
//! (`waypost::fuzzing`) under a plain `cargo test`: no fuzzer needed. A
//! panic or a failed invariant fails the test and names the file.

use std::path::{Path, PathBuf};

use waypost::fuzzing::Harness;
use waypost_module_api::sdk::Shims;
use waypost_round_robin::RoundRobinModule;

fn harness() -> Harness {
    Harness::new(Shims::<RoundRobinModule>::root_module())
        .unwrap_or_else(|e| panic!("the proxy config of the fuzz harness: {e}"))
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `f` on every file of the target's corpus, naming the file that
/// panics.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data)));
        if caught.is_err() {
            panic!("fuzz target {target} panicked on {}", path.display());
        }
    }
}

#[test]
fn config_corpus() {
    let h = harness();
    replay("config", |data| {
        let _ = h.config(data);
    });
}

#[test]
fn config_seeds_pass_where_they_should() {
    // The harness is no wall of errors: the realistic seeds pass `-t`
    // with round robin linked in and names unresolved but `localhost`.
    let h = harness();
    let dir = corpus_dir("config");
    for name in [
        "waypost.conf",
        "upstreams.conf",
        "returns.conf",
        "quotes.conf",
    ] {
        let data = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        match h.config(&data) {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{name}: {e}"),
            None => panic!("{name} was skipped"),
        }
    }
    let data = std::fs::read(dir.join("errors.conf")).expect("errors.conf");
    assert!(matches!(h.config(&data), Some(Err(_))));
    // A name other than localhost is not resolved: no DNS query.
    let unresolved = b"events {} http { server { location / { proxy_pass http://example.com; } } }";
    match h.config(unresolved) {
        Some(Err(e)) => assert!(e.to_string().contains("host not found"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Nothing outside the fuzz directory is included.
    assert!(h.config(b"include /etc/*;").is_none());
}

#[test]
fn template_corpus() {
    let h = harness();
    replay("template", |data| {
        let _ = h.template(data);
    });
    // The seeds reach evaluation.
    let value = |name: &str| {
        let data = std::fs::read(corpus_dir("template").join(name)).expect(name);
        h.template(&data)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    assert_eq!(value("host.txt").as_deref(), Some("upper.example"));
    assert_eq!(value("uri.txt").as_deref(), Some("/a../b/c/d?"));
    let vars = value("vars.txt").expect("vars.txt evaluates");
    for part in [
        "ra=192.0.2.1|",
        "|uri=/a/c/d|",
        "|A=1|",
        "|hxff=10.0.0.1, 10.0.0.2|",
        "|host=example.com|",
        "|user=user|",
        "|d=4|",
    ] {
        assert!(vars.contains(part), "{part} in {vars}");
    }
}

#[test]
fn upstream_headers_corpus() {
    let h = harness();
    replay("upstream_headers", |data| {
        let _ = h.upstream_headers(data);
    });
    // The seeds reach the proxy's rewriting.
    let rewrite = |name: &str| {
        let data = std::fs::read(corpus_dir("upstream_headers").join(name)).expect(name);
        h.upstream_headers(&data)
            .unwrap_or_else(|| panic!("{name} was not proxied"))
    };
    let (uri, headers) = rewrite("root.txt");
    assert_eq!(uri, "/index.html?x=1");
    assert_eq!(headers["host"], "127.0.0.1:9");
    assert_eq!(headers["connection"], "close");
    for dropped in ["keep-alive", "te", "upgrade"] {
        assert!(!headers.contains_key(dropped), "{dropped}");
    }
    // nginx passes it on as it came.
    assert!(headers.contains_key("proxy-connection"));
    let (uri, headers) = rewrite("set.txt");
    assert_eq!(uri, "/c?a=1&b=2");
    assert_eq!(headers["x-real-ip"], "192.0.2.1");
    assert!(!headers.contains_key("connection"));
    // The chunked body goes up chunked: one Transfer-Encoding, the
    // proxy's, whatever the client's said.
    let codings: Vec<_> = headers.get_all("transfer-encoding").iter().collect();
    assert_eq!(codings, ["chunked"]);
    let (uri, _) = rewrite("api.txt");
    assert_eq!(uri, "/v2/users/%7Bid%7D?q=%20");
}
