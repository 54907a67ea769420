//! The checks after a restore: SQL statements run through sqlx against the
//! restored database. Each must succeed; one whose first column is a boolean
//! must return true. A failure names the check.

use super::Error;
use crate::source::postgres::{self, PgConn};
use serde::Serialize;
use sqlx::{Column, Row, TypeInfo};

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub sql: String,
    /// The first column of the first row, as text (when there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Whether a check's first value passes: anything but a boolean false or NULL.
pub fn passes(is_bool: bool, value: Option<bool>) -> bool {
    !is_bool || value == Some(true)
}

pub async fn run_checks(
    conn: &PgConn,
    db: &str,
    checks: &[String],
) -> Result<Vec<CheckResult>, Error> {
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = conn.connect(db).await?;
    let mut out = Vec::new();
    for (i, sql) in checks.iter().enumerate() {
        let name = format!("check {} ({sql:?})", i + 1);
        let row = sqlx::query(sql)
            .fetch_optional(&mut c)
            .await
            .map_err(|e| Error::Check(format!("{name} failed: {e}")))?;
        let mut value = None;
        if let Some(row) = row.filter(|r| !r.columns().is_empty()) {
            let is_bool = row.column(0).type_info().name() == "BOOL";
            if is_bool {
                let v: Option<bool> = row.try_get(0).unwrap_or(None);
                if !passes(true, v) {
                    postgres::close(c).await;
                    return Err(Error::Check(format!(
                        "{name} returned {}",
                        v.map_or("NULL".to_string(), |b| b.to_string())
                    )));
                }
                value = v.map(|b| b.to_string());
            } else {
                value = row
                    .try_get::<Option<i64>, _>(0)
                    .ok()
                    .flatten()
                    .map(|n| n.to_string())
                    .or_else(|| row.try_get::<Option<String>, _>(0).ok().flatten());
            }
        }
        tracing::info!(check = i + 1, value = ?value, "check passed");
        out.push(CheckResult {
            sql: sql.clone(),
            value,
        });
    }
    postgres::close(c).await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_boolean_false_or_null_fails() {
        assert!(super::passes(true, Some(true)));
        assert!(!super::passes(true, Some(false)));
        assert!(!super::passes(true, None));
        assert!(super::passes(false, None));
    }
}
