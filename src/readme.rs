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

/// The README's text before its table of contents: what a newcomer reads
/// first.
pub fn opening() -> &'static str {
    README.split("\n- [Quick start]").next().unwrap_or_default()
}

/// The row of the table whose header is `header` whose first cell is `first`.
pub fn row(header: &str, first: &str) -> Vec<String> {
    table(header)
        .into_iter()
        .find(|row| row.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("the README's table {header} has no row {first}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_buster_purge::Provider;
    use cache_buster_purge::options::{PURGE_BUDGET_SECONDS, purge_budget_seconds};

    const JOB_TABLE: &str = "| part | what it is |";

    /// The opening names every CDN the purge clears (an exhaustive match:
    /// a new provider must be named there too).
    #[test]
    fn the_opening_names_every_provider() {
        let opening = opening().replace('\n', " ");
        for provider in Provider::ALL {
            let named = match provider {
                Provider::Cloudflare => "Cloudflare",
                Provider::Fastly => "Fastly",
                Provider::Webhook => "a webhook",
                Provider::Cloudfront => "CloudFront",
                Provider::Akamai => "Akamai",
                Provider::Bunny => "Bunny",
                Provider::Http => "Varnish",
                Provider::Gcp => "Google Cloud CDN",
                Provider::Azure => "Azure Front Door",
            };
            assert!(opening.contains(named), "the opening does not name {named}");
        }
    }

    /// The purge container's row states the budget the policy writes: the
    /// base, and what each slow CDN adds.
    #[test]
    fn the_purge_budget_is_the_one_the_policy_writes() {
        let purge = row(JOB_TABLE, "container `purge`").join(" ");
        assert!(
            purge.contains(&format!("{PURGE_BUDGET_SECONDS} s")),
            "{purge}"
        );
        for provider in Provider::ALL {
            let completion = provider.info().completion_seconds;
            if completion > 0 {
                let said = format!(
                    "`{provider}`: {completion} s, so {} s",
                    purge_budget_seconds(&[provider])
                );
                assert!(purge.contains(&said), "{said:?} not in {purge}");
            }
        }
    }

    /// Which containers get a service-account token, as the Job has it.
    #[test]
    fn the_purge_gets_a_token_exactly_for_the_providers_that_read_the_api() {
        let credentials = row(JOB_TABLE, "credentials").join(" ");
        for provider in Provider::ALL {
            let said = format!("`{provider}`, which lists");
            assert_eq!(
                credentials.contains(&said),
                provider.info().reads_the_api,
                "{provider}: {credentials}"
            );
        }
    }
}
