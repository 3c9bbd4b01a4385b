//! The README's tables, read by the tests that keep them true to the code
//! (the policy's and, through `#[path]`, the launcher's).

const README: &str = include_str!("../README.md");

/// The rows of the README's table whose header row is `header`, each a list
/// of its cells, trimmed.
pub fn table(header: &str) -> Vec<Vec<String>> {
    let rest = README
        .split(header)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has no table {header}"));
    rest.split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        // The rest of the header row, then the |---| row.
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            cells[1..cells.len().saturating_sub(1)]
                .iter()
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// A cell without its backquotes.
pub fn unquoted(cell: &str) -> &str {
    cell.trim_matches('`')
}
