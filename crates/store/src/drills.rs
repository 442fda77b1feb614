//! Drills of roles: each drill kept whole as JSON in `body`, next to the columns lists filter on
//! (`role`, `stage`, `started_at`, `completed_at`) and a `version` every update names; and each
//! role's drill schedule (when it was first seen, the due date last alerted). A drill starts with
//! its grant in one transaction. Each backend supplies the SQL ([`DrillSql`]).

use breakglass_core::drill::ChannelDelivery;
use breakglass_core::{Drill, DrillId, EventDraft, Grant, GrantId, Timestamp};

use crate::sql::{Conn, Row, Stmt};
use crate::{Result, StoreError, grants};

/// A drill with the version of its row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDrill {
    pub drill: Drill,
    pub version: i64,
}

/// A role's drill schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrillSchedule {
    pub role: String,
    /// When the broker first saw the role (its first drill is due `drill_every` after).
    pub first_seen: Timestamp,
    /// The due date whose `drill.overdue` was recorded last.
    pub alerted_due: Option<Timestamp>,
    /// When its last passing drill completed.
    pub last_passed: Option<Timestamp>,
}

/// The SQL of drills. Parameters, in order, after each field's name; the drill reads return
/// `body` and `version`.
pub(crate) struct DrillSql {
    /// `id, role, grant_id, stage, started_at, completed_at, body`: a new drill at version 1.
    pub(crate) insert: &'static str,
    /// `stage, completed_at, body, id, version`: written over its row if still at `version`.
    pub(crate) update: &'static str,
    /// `id`.
    pub(crate) by_id: &'static str,
    /// `role or NULL, limit`: newest first.
    pub(crate) list: &'static str,
    /// No parameters: drills not completed, oldest first.
    pub(crate) open: &'static str,
    /// `grant id`: one row per delivery of the grant's `drill.started` event (`channel` NULL if
    /// none yet), with `routed` (1 once the dispatcher passed it), `delivered_at`, `dead` (1 if
    /// given up), `attempts`, `last_error`. No row if there is no such event.
    pub(crate) deliveries: &'static str,
    /// `grant id`: the latest credential's `ciphertext` (NULL once delivered or erased).
    pub(crate) credential: &'static str,
    /// `roles, now`: a schedule row for each role that has none.
    pub(crate) schedule_add: &'static str,
    /// No parameters: `role, first_seen, alerted_due, last_passed` for every role.
    pub(crate) schedule: &'static str,
    /// `due, role`: the due date alerted, if it was not already.
    pub(crate) mark_alerted: &'static str,
}

/// See [`crate::Store::start_drill`].
pub(crate) async fn start<C: Conn>(
    tx: &mut C,
    d: &Drill,
    g: &Grant,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<()> {
    grants::insert(tx, g, events, now).await?;
    let (id, body) = (d.id.to_string(), body(d)?);
    let grant = d.grant.to_string();
    let insert = Stmt::new(C::DRILLS.insert)
        .text(&id)
        .text(d.role.as_str())
        .text(&grant)
        .text(d.stage.name())
        .time(d.started_at)
        .opt_time(completed_at(d))
        .text(&body);
    tx.execute(insert).await?;
    Ok(())
}

/// See [`crate::Store::update_drill`].
pub(crate) async fn update<C: Conn>(
    tx: &mut C,
    d: &Drill,
    expected: i64,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<StoredDrill> {
    let (id, body) = (d.id.to_string(), body(d)?);
    let update = Stmt::new(C::DRILLS.update)
        .text(d.stage.name())
        .opt_time(completed_at(d))
        .text(&body)
        .text(&id)
        .int(expected);
    if tx.execute(update).await? != 1 {
        return Err(StoreError::Conflict);
    }
    tx.append(events, now).await?;
    Ok(StoredDrill {
        drill: d.clone(),
        version: expected + 1,
    })
}

/// See [`crate::Store::drill`].
pub(crate) async fn get<C: Conn>(c: &mut C, id: DrillId) -> Result<Option<StoredDrill>> {
    let id = id.to_string();
    let row = c.optional(Stmt::new(C::DRILLS.by_id).text(&id)).await?;
    row.as_ref().map(stored).transpose()
}

/// See [`crate::Store::drills`].
pub(crate) async fn list<C: Conn>(
    c: &mut C,
    role: Option<&str>,
    limit: u32,
) -> Result<Vec<StoredDrill>> {
    let list = Stmt::new(C::DRILLS.list)
        .opt_text(role)
        .int(i64::from(limit));
    c.all(list).await?.iter().map(stored).collect()
}

/// See [`crate::Store::open_drills`].
pub(crate) async fn open<C: Conn>(c: &mut C) -> Result<Vec<StoredDrill>> {
    c.all(Stmt::new(C::DRILLS.open))
        .await?
        .iter()
        .map(stored)
        .collect()
}

/// See [`crate::Store::drill_deliveries`].
pub(crate) async fn deliveries<C: Conn>(
    c: &mut C,
    grant: GrantId,
) -> Result<Option<Vec<ChannelDelivery>>> {
    let grant = grant.to_string();
    let rows = c.all(Stmt::new(C::DRILLS.deliveries).text(&grant)).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    if first.int("routed")? == 0 {
        return Ok(None);
    }
    let mut out = Vec::new();
    for r in &rows {
        let Some(channel) = r.opt_text("channel")? else {
            continue;
        };
        out.push(ChannelDelivery {
            channel,
            delivered_at: r.opt_time("delivered_at")?,
            dead: r.int("dead")? != 0,
            attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
            last_error: r.opt_text("last_error")?,
        });
    }
    Ok(Some(out))
}

/// See [`crate::Store::drill_credential`].
pub(crate) async fn credential<C: Conn>(c: &mut C, grant: GrantId) -> Result<Option<Vec<u8>>> {
    let grant = grant.to_string();
    match c
        .optional(Stmt::new(C::DRILLS.credential).text(&grant))
        .await?
    {
        Some(r) => r.opt_bytes("ciphertext"),
        None => Ok(None),
    }
}

/// See [`crate::Store::drill_schedule`].
pub(crate) async fn schedule<C: Conn>(
    tx: &mut C,
    roles: &[String],
    now: Timestamp,
) -> Result<Vec<DrillSchedule>> {
    if !roles.is_empty() {
        let add = Stmt::new(C::DRILLS.schedule_add)
            .texts(roles.iter().map(String::as_str).collect())
            .time(now);
        tx.execute(add).await?;
    }
    tx.all(Stmt::new(C::DRILLS.schedule))
        .await?
        .iter()
        .map(|r| {
            Ok(DrillSchedule {
                role: r.text("role")?,
                first_seen: r.time("first_seen")?,
                alerted_due: r.opt_time("alerted_due")?,
                last_passed: r.opt_time("last_passed")?,
            })
        })
        .collect()
}

/// See [`crate::Store::record_drill_overdue`].
pub(crate) async fn mark_overdue<C: Conn>(
    tx: &mut C,
    role: &str,
    due: Timestamp,
    events: &[EventDraft],
    now: Timestamp,
) -> Result<bool> {
    let mark = Stmt::new(C::DRILLS.mark_alerted).time(due).text(role);
    if tx.execute(mark).await? != 1 {
        // Another replica alerted this due date first.
        return Ok(false);
    }
    tx.append(events, now).await?;
    Ok(true)
}

fn completed_at(d: &Drill) -> Option<Timestamp> {
    match d.stage {
        breakglass_core::drill::DrillStage::Completed { completed_at, .. } => Some(completed_at),
        _ => None,
    }
}

fn body(d: &Drill) -> Result<String> {
    serde_json::to_string(d).map_err(|e| StoreError::Corrupt(format!("drill body: {e}")))
}

fn stored(r: &impl Row) -> Result<StoredDrill> {
    let drill = serde_json::from_str(&r.text("body")?)
        .map_err(|e| StoreError::Corrupt(format!("drill body: {e}")))?;
    Ok(StoredDrill {
        drill,
        version: r.int("version")?,
    })
}
