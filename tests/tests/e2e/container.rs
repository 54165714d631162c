//! The container path without Docker: the image's entrypoint (`docker/entrypoint.sh`) run
//! with a real bridge binary through its setup steps, and `docker-compose.yml` checked
//! against `configs/` and the scripts it mounts. `scripts/container-test` runs the same
//! files in real containers.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context;
use serde_json::Value;

/// The checkout's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A YAML file of the checkout as a tree.
fn yaml(path: &str) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(root().join(path)).with_context(|| format!("read {path}"))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parse {path}"))
}

fn text(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root().join(path)).with_context(|| format!("read {path}"))
}

/// The bridge crates of the workspace (every `crates/<name>` but the core).
fn bridge_crates() -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("crates"))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "bridge-core" && entry.path().join("Cargo.toml").is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The suite's build of `bridge`'s binary (the same `main` as the shipped one).
fn bridge_binary(bridge: &str) -> &'static str {
    match bridge {
        "discord" => env!("CARGO_BIN_EXE_bridge-discord-e2e"),
        "telegram" => env!("CARGO_BIN_EXE_bridge-telegram-e2e"),
        "whatsapp" => env!("CARGO_BIN_EXE_bridge-whatsapp-e2e"),
        "wechat" => env!("CARGO_BIN_EXE_bridge-wechat-e2e"),
        other => panic!("no binary for the bridge {other}: add it here"),
    }
}

fn mode(path: &Path) -> anyhow::Result<(u32, u32)> {
    let meta = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok((meta.permissions().mode() & 0o7777, meta.uid()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs the image's entrypoint as the container would (`bridge` on PATH, /data moved to
/// `data`), with `args`.
fn entrypoint(bin_dir: &Path, data: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        bin_dir.display()
    );
    let mut command = Command::new("sh");
    command.arg(root().join("docker/entrypoint.sh")).args(args);
    for (var, _) in std::env::vars() {
        if var.contains("_BRIDGE__") {
            command.env_remove(var);
        }
    }
    let output = command
        .env("PATH", path)
        .env("BRIDGE_DATA", data)
        .env("UID", "1337")
        .env("GID", "1337")
        .output()
        .context("run docker/entrypoint.sh")?;
    Ok(output)
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The entrypoint's steps, as in a container started as root on a /data that Docker
/// created root-owned: the first start gives /data to UID 1337, writes config.yaml (0600,
/// written by the bridge as that user) and stops with instructions; an unedited config is
/// refused naming homeserver.domain; the edited one gets registration.yaml (0600) and
/// instructions for homeserver.yaml; later starts run the bridge with the given subcommand.
/// Run as another user, the same steps run as that user.
#[test]
fn entrypoint_writes_config_then_registration_then_runs() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("entrypoint-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir)?;
    // A copy the unprivileged user can reach (the build directory may be under /root).
    let bin = bin_dir.join("bridge");
    if std::fs::hard_link(bridge_binary("discord"), &bin).is_err() {
        std::fs::copy(bridge_binary("discord"), &bin)?;
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data)?;
    std::fs::write(data.join("left-by-root"), "")?;
    let owner = if is_root() { 1337 } else { mode(&data)?.1 };

    let first = entrypoint(&bin_dir, &data, &[])?;
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains(&format!("Wrote {}/config.yaml", data.display())),
        "{}",
        show(&first)
    );
    assert!(
        stdout.contains("homeserver.domain") && stdout.contains("bridge.permissions"),
        "{}",
        show(&first)
    );
    let config = data.join("config.yaml");
    // Created by the bridge after /data changed hands: its owner is the user it ran as.
    assert_eq!(mode(&config)?, (0o600, owner));
    assert_eq!(mode(&data)?.1, owner);
    assert_eq!(
        mode(&data.join("left-by-root"))?.1,
        owner,
        "/data is not given to UID"
    );

    let unedited = entrypoint(&bin_dir, &data, &[])?;
    assert_eq!(unedited.status.code(), Some(2), "{}", show(&unedited));
    assert!(
        String::from_utf8_lossy(&unedited.stderr)
            .contains("`example.com` is still in homeserver.domain"),
        "{}",
        show(&unedited)
    );
    assert!(!data.join("registration.yaml").exists());

    let example = std::fs::read_to_string(&config)?;
    std::fs::write(&config, example.replace("example.com", "matrix.test"))?;
    let second = entrypoint(&bin_dir, &data, &[])?;
    assert_eq!(second.status.code(), Some(0), "{}", show(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains(&format!("Wrote {}/registration.yaml", data.display()))
            && stdout.contains("app_service_config_files"),
        "{}",
        show(&second)
    );
    assert_eq!(mode(&data.join("registration.yaml"))?, (0o600, owner));
    assert_eq!(mode(&config)?.0, 0o600);
    assert!(!std::fs::read_to_string(&config)?.contains("as_token: \"generate\""));

    // Later starts hand their arguments to the bridge (`run` when there are none).
    let later = entrypoint(&bin_dir, &data, &["check-config"])?;
    assert_eq!(later.status.code(), Some(0), "{}", show(&later));
    assert!(
        String::from_utf8_lossy(&later.stdout).contains("config.yaml: ok"),
        "{}",
        show(&later)
    );
    Ok(())
}

/// Every bridge crate has its compose service, and every compose setting that must match
/// something else does: the bridges' addresses and ports against `configs/`, their database
/// URIs against the databases the PostgreSQL init script creates, the registration paths
/// against what Synapse's start script loads, Synapse's version against the one the suite
/// tests, and the environment the compose file sets is accepted by each bridge's
/// `check-config` and makes the registration point at the bridge's service.
#[test]
fn compose_file_agrees_with_the_configs() -> anyhow::Result<()> {
    let compose = yaml("docker-compose.yml")?;
    let services = compose["services"].as_object().context("services")?;
    let bridges = bridge_crates()?;
    let mut bridge_services: Vec<String> = services
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(n, _)| n.clone())
        .collect();
    bridge_services.sort();
    assert_eq!(
        bridge_services, bridges,
        "one built service per bridge crate, no more"
    );

    // Synapse: the tested version, the bridges' registrations, PostgreSQL.
    let venv = text("scripts/synapse-venv")?;
    let version = venv
        .lines()
        .find_map(|l| {
            l.strip_prefix("version=\"${SYNAPSE_VERSION:-")?
                .strip_suffix("}\"")
        })
        .context("version in scripts/synapse-venv")?;
    let synapse = &services["synapse"];
    assert_eq!(synapse["image"], format!("matrixdotorg/synapse:v{version}"));
    let volumes: Vec<&str> = synapse["volumes"]
        .as_array()
        .context("volumes")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let start = text("docker/synapse/start.sh")?;
    assert!(
        volumes.contains(&"./docker/synapse:/start:ro")
            && synapse["entrypoint"][1] == "/start/start.sh"
    );
    assert!(
        start.contains("for file in /bridges/*/registration.yaml"),
        "start.sh loads the registrations"
    );
    for needle in [
        "port: 8008",
        "host: postgres",
        "port: 5432",
        "user: synapse",
        "dbname: synapse",
    ] {
        assert!(start.contains(needle), "start.sh: {needle}");
    }
    assert!(synapse["ports"][0]
        .as_str()
        .is_some_and(|p| p.ends_with(":8008")));
    assert_eq!(
        synapse["healthcheck"]["test"][3],
        "http://127.0.0.1:8008/health"
    );
    assert_eq!(
        synapse["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );

    let postgres = &services["postgres"];
    let initdb = postgres["environment"]["POSTGRES_INITDB_ARGS"]
        .as_str()
        .context("POSTGRES_INITDB_ARGS")?;
    assert!(
        initdb.contains("--lc-collate=C") && initdb.contains("--lc-ctype=C"),
        "{initdb}"
    );
    assert!(postgres["volumes"]
        .as_array()
        .is_some_and(|v| v.contains(&"./docker/postgres:/docker-entrypoint-initdb.d:ro".into())));
    assert!(postgres.get("healthcheck").is_some());
    let init = text("docker/postgres/init-databases.sh")?;
    let databases = init
        .lines()
        .find_map(|l| l.split("${DATABASES:-").nth(1)?.split('}').next())
        .context("DATABASES in init-databases.sh")?;
    let databases: Vec<&str> = databases.split_whitespace().collect();
    assert!(databases.contains(&"synapse"));

    let entrypoint = text("docker/entrypoint.sh")?;
    assert!(
        entrypoint.contains("data=\"${BRIDGE_DATA:-/data}\"")
            && entrypoint.contains("registration=\"$data/registration.yaml\"")
    );

    for bridge in &bridges {
        let service = &services[bridge.as_str()];
        let config = yaml(&format!("configs/{bridge}.yaml"))?;
        let port = config["appservice"]["port"]
            .as_u64()
            .context("appservice.port")?;
        let prefix = format!("{}_BRIDGE", bridge.to_uppercase());
        let env = service["environment"].as_object().context("environment")?;
        let get = |key: &str| env.get(&format!("{prefix}__{key}")).and_then(Value::as_str);
        assert_eq!(
            get("APPSERVICE__ADDRESS"),
            Some(format!("http://{bridge}:{port}").as_str()),
            "{bridge}"
        );
        assert_eq!(get("APPSERVICE__HOSTNAME"), Some("0.0.0.0"), "{bridge}");
        assert_eq!(
            get("HOMESERVER__ADDRESS"),
            Some("http://synapse:8008"),
            "{bridge}"
        );
        assert_eq!(
            get("DATABASE__URI"),
            Some(
                format!("postgres://{bridge}:${{POSTGRES_PASSWORD}}@postgres:5432/{bridge}")
                    .as_str()
            ),
            "{bridge}"
        );
        assert!(
            databases.contains(&bridge.as_str()),
            "init-databases.sh creates no database {bridge}"
        );
        assert_eq!(service["build"]["args"]["BRIDGE"], bridge.as_str());
        assert_eq!(
            service["volumes"],
            serde_json::json!([format!("./data/{bridge}:/data")])
        );
        assert!(
            volumes.contains(&format!("./data/{bridge}:/bridges/{bridge}:ro").as_str()),
            "synapse does not see {bridge}'s registration"
        );
        for dependency in ["postgres", "synapse"] {
            assert_eq!(
                service["depends_on"][dependency]["condition"], "service_healthy",
                "{bridge}"
            );
        }

        // The bridge itself accepts that environment, and registers at its service's address.
        let dir = tempfile::tempdir()?;
        let example = text(&format!("configs/{bridge}.yaml"))?;
        std::fs::write(
            dir.path().join("config.yaml"),
            example.replace("example.com", "matrix.test"),
        )?;
        let vars: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v.as_str().unwrap_or_default())))
            .collect();
        for args in [&["check-config"][..], &["generate-registration"]] {
            let output = Command::new(bridge_binary(bridge))
                .args(["-c", "config.yaml", "-r", "registration.yaml"])
                .args(args)
                .current_dir(dir.path())
                .envs(&vars)
                .output()?;
            assert!(
                output.status.success(),
                "{bridge} {args:?} with the compose environment: {}",
                show(&output)
            );
        }
        let registration = std::fs::read_to_string(dir.path().join("registration.yaml"))?;
        assert!(
            registration.contains(&format!("url: http://{bridge}:{port}\n")),
            "{registration}"
        );
    }

    // The WeChat bridge's default puppet service is the optional service's port.
    let puppet_port =
        services["wechat-puppet"]["environment"]["WECHATY_PUPPET_SERVER_PORT"].as_str();
    let endpoint = services["wechat"]["environment"]["WECHAT_BRIDGE__NETWORK__ENDPOINT"]
        .as_str()
        .map(substitute);
    assert_eq!(
        endpoint,
        puppet_port.map(|p| format!("http://wechat-puppet:{p}"))
    );

    // The container test's override swaps images only, for services that exist.
    let overrides = yaml("tests/container/override.yml")?;
    for (name, service) in overrides["services"]
        .as_object()
        .context("override services")?
    {
        assert!(services.contains_key(name), "override.yml names {name}");
        assert_eq!(
            service.as_object().map(|s| s.keys().collect::<Vec<_>>()),
            Some(vec![&"image".to_owned()]),
            "{name}"
        );
    }
    Ok(())
}

/// Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` with no variable set: the
/// default, or a stand-in password.
fn substitute(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        let inner = &rest[start + 2..end];
        match inner.split_once(":-") {
            Some((_, default)) => out.push_str(default),
            None => out.push_str("password1"),
        }
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}
