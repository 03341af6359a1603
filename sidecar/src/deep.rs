//! Deep verification of database artifacts: restore into a scratch database on the same
//! server, count, and always drop it again.

use arca_api::manifest::{ComponentRecord, Items, TableCount};

use crate::source::mysql::{find_tools, MyDatabase, OptionFile};
use crate::source::postgres::{choose_tool, installed_tools, PgConn};
use crate::unseal::Artifact;

fn scratch_name() -> String {
    format!("arca_verify_{:08x}", rand::random::<u32>())
}

/// Restore a pg_dump artifact into a scratch database and count.
pub async fn postgres(
    artifact: Artifact,
    rec: &ComponentRecord,
    conn: &PgConn,
) -> Result<Items, String> {
    let admin = conn.connect("postgres").await.map_err(|e| e.to_string())?;
    let row = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| conn.map_error(e, "postgres").to_string())?;
    let major = (row.get::<_, i32>(0) / 10_000) as u32;
    let tools = tokio::task::spawn_blocking(|| installed_tools("pg_restore"))
        .await
        .unwrap_or_default();
    let tool = choose_tool(&tools, "pg_restore", major).map_err(|e| e.to_string())?;
    let db = scratch_name();
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    admin
        .batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", q(&db)))
        .await
        .map_err(|e| {
            format!(
                "cannot create a scratch database: {}",
                conn.map_error(e, &db)
            )
        })?;
    let result = async {
        let mut cmd = conn.command(&tool.path);
        cmd.arg("--no-owner")
            .arg("--no-privileges")
            .arg("--dbname")
            .arg(&db);
        tokio::task::spawn_blocking(move || pipe(artifact, cmd, "pg_restore"))
            .await
            .map_err(|e| e.to_string())??;
        let client = conn.connect(&db).await.map_err(|e| e.to_string())?;
        let mut tables = Vec::new();
        for t in &rec.items.tables {
            let (schema, name) = t.name.split_once('.').unwrap_or(("public", &t.name));
            let sql = format!("SELECT count(*) FROM {}.{}", q(schema), q(name));
            let rows: i64 = match client.query_one(sql.as_str(), &[]).await {
                Ok(r) => r.get(0),
                Err(_) => continue,
            };
            tables.push(TableCount {
                name: t.name.clone(),
                rows: rows.max(0) as u64,
            });
        }
        let lo: i64 = client
            .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(-1);
        drop(client);
        Ok::<_, String>(Items {
            tables,
            large_objects: (lo >= 0).then_some(lo as u64),
            ..Default::default()
        })
    }
    .await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", q(&db)))
        .await;
    result
}

/// Restore a MariaDB dump into a scratch database and count.
pub async fn mysql(artifact: Artifact, m: &MyDatabase) -> Result<Items, String> {
    let mut m = m.clone();
    m.database = scratch_name();
    tokio::task::spawn_blocking(move || {
        let tools = find_tools().map_err(|e| e.to_string())?;
        let opts = OptionFile::new(m.password.as_ref()).map_err(|e| e.to_string())?;
        let run = |sql: &str| -> Result<String, String> {
            let mut c = m.command(&tools.client, &opts);
            c.args(["--batch", "--skip-column-names", "-e", sql]);
            let out = c.output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(m.map_client_error(&String::from_utf8_lossy(&out.stderr)).to_string());
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        run(&format!("CREATE DATABASE `{}`", m.database))?;
        let result = (|| {
            let mut cmd = m.command(&tools.client, &opts);
            cmd.arg("--batch").arg("--database").arg(&m.database);
            pipe(artifact, cmd, "mariadb")?;
            let list = run(&format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='{}' AND TABLE_TYPE='BASE TABLE'",
                m.database
            ))?;
            let mut tables = Vec::new();
            for name in list.lines().filter(|l| !l.is_empty()) {
                let n = run(&format!(
                    "SELECT COUNT(*) FROM `{}`.`{}`",
                    m.database,
                    name.replace('`', "``")
                ))?;
                tables.push(TableCount {
                    name: name.to_string(),
                    rows: n.trim().parse().unwrap_or(0),
                });
            }
            Ok(Items {
                tables,
                ..Default::default()
            })
        })();
        let _ = run(&format!("DROP DATABASE IF EXISTS `{}`", m.database));
        result
    })
    .await
    .map_err(|e| e.to_string())?
}

fn pipe(a: Artifact, cmd: std::process::Command, tool: &str) -> Result<(), String> {
    crate::restore::pipe_into_child(a, cmd, tool, None).map(|_| ())
}
