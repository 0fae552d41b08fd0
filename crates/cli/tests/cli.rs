//! The CLI's fast tier: `porthole` against a plane in this process
//! (`porthole_testing::app::TestApp`, on a fake node), for what needs no guest.

use porthole_testing::app::TestApp;
use porthole_testing::porthole_binary;
use porthole_testing::server::*;

// The CLI runs as a child process the test waits for, so the plane in this process needs
// threads of its own to answer it: every test here runs on a multi-threaded runtime.

/// A plane with the approved `demo` template, as `porthole serve --demo` has it.
async fn demo_app() -> TestApp {
    let app = TestApp::start().await;
    app.template("demo", true).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_failures_print_one_line_and_exit_nonzero() {
    let server = demo_app().await;
    let token = server.admin_token().await;
    let one_line_error = |args: &[&str], expected: &str| {
        let (code, out, err) = server.cli(&token, args);
        assert_eq!(code, 1, "{args:?} exited {code}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    };
    one_line_error(
        &["vm", "create", "Bad_Name", "--template", "demo"],
        "name: may contain only lowercase",
    );
    one_line_error(
        &["vm", "create", "ok", "--template", "nosuch"],
        "template: no template named",
    );
    one_line_error(
        &["vm", "create", "ok", "--template", "demo", "--cores", "0"],
        "cores: must be between",
    );
    one_line_error(&["vm", "show", "nosuch"], "no VM named \"nosuch\"");
    one_line_error(&["job", "show", "not-an-id"], "is not a job id");
    one_line_error(
        &["template", "import", "/nonexistent.qcow2", "--name", "x"],
        "cannot read /nonexistent.qcow2",
    );

    let output = std::process::Command::new(porthole_binary())
        .args(["vm", "list", "--url", "http://127.0.0.1:1"])
        .env("PORTHOLE_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("cannot reach porthole at http://127.0.0.1:1/")
    );

    let output = std::process::Command::new(porthole_binary())
        .args(["vm", "list", "--url", &server.url])
        .env(
            "PORTHOLE_CONFIG",
            server.data_dir.with_file_name("empty.toml"),
        )
        .env_remove("PORTHOLE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("not logged in: run `porthole login` first")
    );
    assert!(server.vm_files().is_empty());
}
