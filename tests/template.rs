//! The template module builds on its own outside the workspace, as a
//! user's crate would, and serves traffic once loaded: the walk-through of
//! docs/writing-a-module.md, end to end.

use std::path::Path;

use waypost_tests::{cargo_build, free_ports, get, Server, TempDir};

#[test]
fn template_module_builds_outside_the_workspace_and_serves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let crate_dir = TempDir::new("template");
    // Copy the template where no workspace is above it, pointing its
    // dependency at this checkout's module-api.
    let manifest = std::fs::read_to_string(root.join("templates/module/Cargo.toml"))
        .expect("template manifest");
    let manifest = manifest.replace(
        "../../module-api",
        &root.join("module-api").display().to_string(),
    );
    crate_dir.write("Cargo.toml", &manifest);
    let lib =
        std::fs::read_to_string(root.join("templates/module/src/lib.rs")).expect("template source");
    crate_dir.write("src/lib.rs", &lib);

    // A target directory kept between runs, so only the first one compiles
    // the dependencies.
    let target = root.join("target/template-module");
    cargo_build(&crate_dir.path.join("Cargo.toml"), &target);
    let so = target.join("debug/libfirst_up.so");

    let [proxy, dead, live] = free_ports(3)[..] else {
        unreachable!()
    };
    let conf = format!(
        "load_module {so};\nerror_log logs/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    upstream app {{ first_up; server 127.0.0.1:{dead}; server 127.0.0.1:{live}; }}\n    server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://app; }} }}\n    server {{ listen 127.0.0.1:{live}; location / {{ return 200 \"live\\n\"; }} }}\n}}\n",
        so = so.display()
    );
    let _server = Server::waypost(&conf, &[proxy, live]);
    // The first peer is dead: the module does not retry, so the first
    // request fails; the failure makes the peer unavailable (max_fails=1),
    // so the next request goes to the first peer that is up.
    assert_eq!(get(proxy, "/").status, 502);
    let r = get(proxy, "/");
    assert_eq!((r.status, r.body.as_str()), (200, "live\n"));
}
