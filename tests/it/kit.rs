//! The operator's kit: shell completions, the man page, the systemd units under scripts/systemd/.
//! Tools that may be absent (zsh, fish, man, systemd-analyze) are installed by scripts/test.sh;
//! without them the check that needs them is skipped with a printed reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{Store, bin};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs `tool args… file`, asserting exit 0 and nothing on stderr.
fn check_clean(tool: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(file)
        .env("MANWIDTH", "100")
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{tool} {args:?} {}: {}\n{stderr}",
        file.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn completions(shell: &str) -> String {
    let run = Store::new().run(&["completions", shell]).ok();
    // generated from the real definitions: every subcommand and a nested option are there
    for word in ["sync", "publish", "gc", "completions", "limit-rate", "root"] {
        assert!(run.stdout.contains(word), "{shell}: no {word}");
    }
    run.stdout
}

#[test]
fn completion_scripts_parse() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &[&str]); 3] = [
        ("bash", "bash", &["-n"]),
        ("zsh", "zsh", &["-n"]),
        ("fish", "fish", &["--no-execute"]),
    ];
    for (shell, tool, args) in cases {
        let path = dir.path().join(shell);
        std::fs::write(&path, completions(shell)).unwrap();
        if have(tool) {
            check_clean(tool, args, &path);
        } else {
            eprintln!("skipped: {tool} is not installed, {shell} completions not parsed");
        }
    }
}

#[test]
fn completions_reject_an_unknown_shell() {
    let run = Store::new().run(&["completions", "tcsh"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn man_page_renders() {
    let run = Store::new().run(&["man"]).ok();
    for needle in [
        ".TH streamvault 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
        "STREAMVAULT_ROOT",
    ] {
        assert!(
            run.stdout.contains(needle),
            "no {needle} in:\n{}",
            run.stdout
        );
    }
    if !have("man") {
        eprintln!("skipped: man is not installed, the page was not rendered");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("streamvault.1");
    std::fs::write(&page, &run.stdout).unwrap();
    let text = check_clean("man", &["-l"], &page);
    assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    assert!(text.contains("streamvault-sync(1)"), "{text}");
}

#[test]
fn man_pages_into_a_directory() {
    let store = Store::new();
    let dir = store.dir.path().join("man/man1");
    store.run(&["man", "--out-dir", dir.to_str().unwrap()]).ok();
    for page in [
        "streamvault.1",
        "streamvault-sync.1",
        "streamvault-source-add.1",
        "streamvault-completions.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH streamvault"), "{page}");
    }
    // under a regular file: one error line, exit 2
    let file = store.dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("man1");
    let run = store
        .run(&["man", "--out-dir", bad.to_str().unwrap()])
        .fails();
    assert_eq!(run.code, 2);
}

fn units() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd");
    let mut units: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("service" | "timer" | "socket" | "path")
            )
        })
        .collect();
    units.sort();
    units
}

fn directive<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn sync_unit_runs_sync_all_quietly_as_the_system_user() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd");
    let service = std::fs::read_to_string(dir.join("streamvault-sync.service")).unwrap();
    let timer = std::fs::read_to_string(dir.join("streamvault-sync.timer")).unwrap();
    assert_eq!(
        directive(&service, "ExecStart"),
        ["/usr/bin/streamvault sync --all -q"]
    );
    assert_eq!(directive(&service, "Type"), ["oneshot"]);
    assert_eq!(directive(&service, "User"), ["streamvault"]);
    assert_eq!(
        directive(&service, "Environment"),
        ["STREAMVAULT_ROOT=/var/lib/streamvault"]
    );
    assert_eq!(directive(&service, "ProtectSystem"), ["strict"]);
    assert_eq!(
        directive(&service, "ReadWritePaths"),
        ["/var/lib/streamvault"]
    );
    // the store root stays traversable for the web server (www-data) reading published trees
    assert_eq!(directive(&service, "StateDirectoryMode"), ["0711"]);
    assert!(
        directive(&service, "WantedBy").is_empty(),
        "started by the timer only"
    );
    assert_eq!(directive(&timer, "WantedBy"), ["timers.target"]);
    assert_eq!(directive(&timer, "Persistent"), ["true"]);
}

#[test]
fn systemd_analyze_verify_passes_on_every_unit() {
    let units = units();
    assert!(
        units
            .iter()
            .any(|u| u.ends_with("streamvault-sync.service")),
        "{units:?}"
    );
    for u in &units {
        let text = std::fs::read_to_string(u).unwrap();
        for exec in directive(&text, "ExecStart") {
            assert!(
                exec.starts_with("/usr/bin/streamvault "),
                "{}: ExecStart={exec} (the package installs /usr/bin/streamvault)",
                u.display()
            );
        }
    }
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed (scripts/test.sh installs systemd)");
        return;
    }
    // Copies that run the binary under test (verify checks ExecStart is executable) and a
    // MANPATH holding our generated pages (verify checks Documentation=man:…).
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man/man1");
    Store::new()
        .run(&["man", "--out-dir", man.to_str().unwrap()])
        .ok();
    let mut copies = Vec::new();
    for u in &units {
        let text = std::fs::read_to_string(u).unwrap();
        let copy = dir.path().join(u.file_name().unwrap());
        std::fs::write(&copy, text.replace("/usr/bin/streamvault", bin())).unwrap();
        copies.push(copy);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .env("MANPATH", dir.path().join("man"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on some parse errors ("…, ignoring"), so any message is a failure
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {units:?}: {}\n{stderr}",
        out.status
    );
}

/// scripts/test.sh against a fake `cargo` that prints canned `test result:` lines: the last line
/// sums every target, and the exit status says whether anything failed.
fn test_sh_with_fake_cargo(
    test_output: &str,
    test_status: i32,
    clippy_status: i32,
) -> (String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("cargo");
    let calls = dir.path().join("calls");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{calls}'\ncase \"$1\" in\n\
             clippy) exit {clippy_status} ;;\n\
             test) cat <<'OUT'\n{test_output}\nOUT\nexit {test_status} ;;\n\
             esac\nexit 0\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("PATH", path)
        .env("STREAMVAULT_TEST_NO_INSTALL", "1")
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert!(calls.contains("fmt --check"), "{calls}");
    assert!(calls.contains("clippy --all-targets"), "{calls}");
    assert!(calls.contains("-D warnings"), "{calls}");
    assert!(
        calls.contains("test --all-targets --no-fail-fast"),
        "{calls}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    (last, out.status.code().unwrap_or(-1))
}

#[test]
fn test_sh_ends_with_the_sum_over_every_target() {
    let lib = "test result: ok. 171 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out";
    let it = "test result: FAILED. 65 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out";
    let ex = "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out";
    let all_ok = format!(
        "{lib}\nrunning\n{}\n{ex}",
        it.replace("FAILED", "ok").replace("2 failed", "0 failed")
    );
    assert_eq!(
        test_sh_with_fake_cargo(&all_ok, 0, 0),
        ("236 passed, 0 failed".into(), 0)
    );
    let some_fail = format!("{lib}\n{it}\n{ex}");
    assert_eq!(
        test_sh_with_fake_cargo(&some_fail, 101, 0),
        ("236 passed, 2 failed".into(), 1)
    );
    // a build failure prints no result line: still the summary, and a failure
    let no_build = "error[E0425]: cannot find value `x` in this scope";
    assert_eq!(
        test_sh_with_fake_cargo(no_build, 101, 0),
        ("0 passed, 0 failed".into(), 1)
    );
    // clippy warnings fail the run even when every test passes
    assert_eq!(
        test_sh_with_fake_cargo(&all_ok, 0, 1),
        ("236 passed, 0 failed".into(), 1)
    );
}
