//! Merging an operator's `hosts.toml` into kagami's: kagami's endpoint is
//! tried first, the operator's own `[host.…]` entries follow in their order
//! and formatting, and the operator's top-level settings (their `server`,
//! say) win, since they describe the registry itself.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table};

use crate::Error;

/// Moves the operator's tables after all of kagami's in the output while
/// keeping their relative order.
const AFTER_OURS: isize = 1 << 20;

/// kagami's file `ours` with the operator's file `theirs` (read from
/// `path`) merged in.
pub(super) fn merge(ours: &str, theirs: &str, path: &Path) -> Result<String, Error> {
    let parse = |text: &str| {
        text.parse::<DocumentMut>().map_err(|e| Error::ParseHosts {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    };
    let mut merged = parse(ours)?;
    let theirs = parse(theirs)?;
    for (key, item) in theirs.iter() {
        if key == "host" {
            continue;
        }
        match merged.get_mut(key) {
            // Replacing only the value keeps kagami's comment on the key.
            Some(ours) if item.is_value() => *ours = item.clone(),
            Some(_) => {}
            None => {
                merged.insert(key, moved_after(item.clone()));
            }
        }
    }
    if let Some(their_hosts) = theirs.get("host").and_then(Item::as_table) {
        let hosts = merged
            .entry("host")
            .or_insert_with(|| Item::Table(implicit_table()));
        if let Some(hosts) = hosts.as_table_mut() {
            for (url, item) in their_hosts.iter() {
                if !hosts.contains_key(url) {
                    hosts.insert(url, moved_after(item.clone()));
                }
            }
        }
    }
    Ok(merged.to_string())
}

fn implicit_table() -> Table {
    let mut table = Table::new();
    table.set_implicit(true);
    table
}

fn moved_after(mut item: Item) -> Item {
    if let Some(table) = item.as_table_mut() {
        shift(table);
    }
    item
}

fn shift(table: &mut Table) {
    if let Some(position) = table.position() {
        table.set_position(Some(position + AFTER_OURS));
    }
    for (_, item) in table.iter_mut() {
        if let Some(inner) = item.as_table_mut() {
            shift(inner);
        }
    }
}
