//! scripts/ensure-services.sh on a fresh machine, decided without
//! uninstalling anything: `--dry-run` with a PATH that holds only the
//! tools a case allows (stubs that fail if ever run), so each case sees a
//! machine missing some of MariaDB, RabbitMQ, the mysql client, curl,
//! python3, jq, chromium, chromium-driver, selenium, cargo and
//! cargo-nextest.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command};

struct Machine {
    dir: PathBuf,
}

impl Machine {
    /// A PATH directory with bash and a stub for each of `tools`.
    fn with(tools: &[&str]) -> Machine {
        let dir =
            std::env::temp_dir().join(format!("dop-ensure-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/bin/bash", dir.join("bash")).unwrap();
        for t in tools {
            let p = dir.join(t);
            // A dry run must never run a tool it would install with.
            std::fs::write(&p, "#!/bin/bash\necho \"stub $0 ran\" >&2\nexit 99\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Machine { dir }
    }

    /// Runs the dry run as user `uid`; (exit code, stdout + stderr).
    fn dry_run(&self, uid: u32, mariadbd_installed: bool) -> (i32, String) {
        self.dry_run_with(uid, mariadbd_installed, true)
    }

    /// The same, saying whether python3 has selenium.
    fn dry_run_with(&self, uid: u32, mariadbd_installed: bool, selenium: bool) -> (i32, String) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ensure-services.sh");
        let mariadbd = if mariadbd_installed {
            self.dir.join("mysql") // any executable file stands for it
        } else {
            self.dir.join("no-mariadbd")
        };
        let out = Command::new("/bin/bash")
            .arg(script)
            .arg("--dry-run")
            .env_clear()
            .env("PATH", &self.dir)
            .env("DOP_UID", uid.to_string())
            .env("DOP_MARIADBD", mariadbd)
            .env("DOP_SELENIUM", if selenium { "1" } else { "0" })
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("stub "), "a dry run ran a tool:\n{text}");
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ALL_PACKAGES: &str =
    "mariadb-server mariadb-client rabbitmq-server curl python3 jq chromium chromium-driver";

#[test]
fn as_root_with_apt_it_installs_every_missing_package_and_nextest() {
    let m = Machine::with(&["apt-get", "cargo"]);
    let (code, out) = m.dry_run(0, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "would run: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {ALL_PACKAGES}"
        )),
        "{out}"
    );
    assert!(
        out.contains("would run: cargo install --locked cargo-nextest"),
        "{out}"
    );
}

#[test]
fn without_root_it_stops_and_says_the_sudo_command() {
    let m = Machine::with(&["apt-get", "cargo", "cargo-nextest"]);
    let (code, out) = m.dry_run(1000, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "sudo apt-get update && sudo apt-get install -y {ALL_PACKAGES}"
        )),
        "{out}"
    );
}

#[test]
fn only_what_is_missing_is_installed() {
    let m = Machine::with(&[
        "apt-get",
        "mysql",
        "mysqladmin",
        "curl",
        "python3",
        "jq",
        "chromium",
        "chromedriver",
        "cargo",
        "cargo-nextest",
    ]);
    let (code, out) = m.dry_run(0, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("apt-get install -y rabbitmq-server\n"),
        "{out}"
    );
    assert!(!out.contains("cargo install"), "{out}");
}

#[test]
fn without_cargo_it_stops_and_says_how_to_get_nextest() {
    let m = Machine::with(&[
        "mysql",
        "mysqladmin",
        "rabbitmq-server",
        "rabbitmq-plugins",
        "curl",
        "python3",
        "jq",
        "chromium",
        "chromedriver",
    ]);
    let (code, out) = m.dry_run(0, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("https://rustup.rs"), "{out}");
    assert!(
        out.contains("cargo install --locked cargo-nextest"),
        "{out}"
    );
}

#[test]
fn a_complete_machine_needs_nothing_installed() {
    let m = Machine::with(&[
        "apt-get",
        "mysql",
        "mysqladmin",
        "rabbitmq-server",
        "rabbitmq-plugins",
        "curl",
        "python3",
        "jq",
        "chromium",
        "chromedriver",
        "cargo",
        "cargo-nextest",
    ]);
    let (code, out) = m.dry_run(0, true);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("would run"), "{out}");
    assert!(!out.contains("missing"), "{out}");
}

#[test]
fn selenium_comes_from_pip_and_only_when_missing() {
    let m = Machine::with(&[
        "apt-get",
        "mysql",
        "mysqladmin",
        "rabbitmq-server",
        "rabbitmq-plugins",
        "curl",
        "python3",
        "jq",
        "chromium",
        "chromedriver",
        "cargo",
        "cargo-nextest",
    ]);
    let (code, out) = m.dry_run_with(0, true, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would run: python3 -m pip install selenium"),
        "{out}"
    );
    assert!(!out.contains("apt-get install"), "{out}");
    let (_, out) = m.dry_run_with(0, true, true);
    assert!(!out.contains("selenium"), "{out}");
}

#[test]
fn the_browser_and_its_driver_are_debian_packages() {
    let m = Machine::with(&[
        "apt-get",
        "mysql",
        "mysqladmin",
        "rabbitmq-server",
        "rabbitmq-plugins",
        "curl",
        "python3",
        "jq",
        "cargo",
        "cargo-nextest",
    ]);
    let (code, out) = m.dry_run(0, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("apt-get install -y chromium chromium-driver\n"),
        "{out}"
    );
}
