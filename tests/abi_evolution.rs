//! ABI evolution: a module built against waypost-module-api 1.0 (the pinned
//! copy in tests/fixtures/abi_1_0/module-api) keeps loading and serving in
//! the current waypost, whose module-api gained a minor version since.

use std::path::Path;

use waypost_tests::{cargo_build, free_ports, get, Server, TempDir};

/// `major.minor.patch` of a `version = "..."` value.
fn parse_version(text: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = text
        .split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("bad version {text:?}")))
        .collect();
    let [major, minor, patch] = parts[..] else {
        panic!("bad version {text:?}")
    };
    (major, minor, patch)
}

/// The `version = "..."` of a table (`[package]`, `[workspace.package]`) in
/// a manifest; `None` when the table has none or inherits it.
fn table_version(manifest: &str, table: &str) -> Option<String> {
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == table;
        } else if in_table {
            let Some(rest) = line.strip_prefix("version") else {
                continue;
            };
            let Some(value) = rest.trim_start().strip_prefix('=') else {
                continue;
            };
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// The package version of the crate at `dir`, following
/// `version.workspace = true` to the workspace root `root`.
fn package_version(dir: &Path, root: &Path) -> (u64, u64, u64) {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read manifest");
    let version = table_version(&manifest, "[package]").unwrap_or_else(|| {
        let root_manifest =
            std::fs::read_to_string(root.join("Cargo.toml")).expect("read workspace manifest");
        table_version(&root_manifest, "[workspace.package]").expect("workspace version")
    });
    parse_version(&version)
}

/// Copies the files of `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

#[test]
fn module_built_against_abi_1_0_loads_and_serves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let fixtures = root.join("tests/fixtures/abi_1_0");

    // The premise: the pinned SDK is 1.0.0 and the current one is a later
    // minor version of the same major.
    let old = package_version(&fixtures.join("module-api"), root);
    let new = package_version(&root.join("module-api"), root);
    assert_eq!(old, (1, 0, 0), "the pinned module-api is not 1.0.0");
    assert!(
        new.0 == old.0 && new.1 > old.1,
        "module-api {new:?} is not a later minor version of {old:?}"
    );

    // Both crates go where no workspace is above them (under /work/main the
    // pinned module-api would be taken for a workspace member); the
    // fixture's `../module-api` dependency keeps pointing at the copy.
    let dir = TempDir::new("abi-1.0");
    copy_dir(&fixtures.join("module-api"), &dir.path.join("module-api"));
    copy_dir(&fixtures.join("module"), &dir.path.join("module"));
    let manifest = dir.path.join("module/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("fixture manifest");
    assert!(
        text.contains("path = \"../module-api\""),
        "the fixture no longer depends on ../module-api"
    );

    // A target directory kept between runs, so only the first one compiles
    // abi_stable.
    let target = root.join("target/abi-1.0");
    cargo_build(&manifest, &target);
    // The build resolved the module's SDK to the pinned 1.0.0.
    let lock = std::fs::read_to_string(dir.path.join("module/Cargo.lock")).expect("Cargo.lock");
    assert!(
        lock.contains("name = \"waypost-module-api\"\nversion = \"1.0.0\""),
        "the fixture was not built against module-api 1.0.0:\n{lock}"
    );
    let so = target.join("debug/libabi10_fixture.so");

    let [proxy, b1, b2, b3, down] = free_ports(5)[..] else {
        unreachable!()
    };
    let conf = format!(
        "load_module {so};\n\
         error_log logs/error.log;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   upstream app {{\n\
         \x20       last_up;\n\
         \x20       server 127.0.0.1:{b1};\n\
         \x20       server 127.0.0.1:{b2};\n\
         \x20       server 127.0.0.1:{b3};\n\
         \x20       server 127.0.0.1:{down} down;\n\
         \x20   }}\n\
         \x20   server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://app; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{b1}; location / {{ return 200 \"b1\\n\"; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{b2}; location / {{ return 200 \"b2\\n\"; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{b3}; location / {{ return 200 \"b3\\n\"; }} }}\n\
         }}\n",
        so = so.display()
    );
    let server = Server::waypost(&conf, &[proxy, b1, b2, b3]);
    // The old module decides: always the last peer that is up (the `down`
    // one is not), where round robin would spread the requests.
    for _ in 0..6 {
        let r = get(proxy, "/");
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "b3\n"),
            "error log:\n{}",
            server.read("logs/error.log")
        );
    }
}
