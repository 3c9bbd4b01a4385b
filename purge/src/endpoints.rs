//! Provider `http`: the caches to purge are the ready endpoints of the
//! site's cache Service, read from its EndpointSlices (each replica of a
//! cache keeps its own objects, so each one gets the purge).

use crate::options::{HttpService, ServicePort as WantedPort};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// The label EndpointSlices carry with the name of their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The address of every ready endpoint of `service`, on its chosen port,
/// in a stable order.
pub async fn ready_endpoints(
    client: kube::Client,
    namespace: &str,
    service: &HttpService,
) -> Result<Vec<SocketAddr>, String> {
    let qualified = format!("{namespace}/{}", service.name);
    let found = Api::<Service>::namespaced(client.clone(), namespace)
        .get(&service.name)
        .await
        .map_err(|error| format!("cannot read the cache Service {qualified}: {error}"))?;
    let slices = Api::<EndpointSlice>::namespaced(client, namespace)
        .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={}", service.name)))
        .await
        .map_err(|error| {
            format!("cannot list the EndpointSlices of the cache Service {qualified}: {error}")
        })?;
    resolve(&qualified, &found, &slices.items, service.port.as_ref())
}

/// The Service's port as `wanted` names it (by number or name; none: its
/// only port), then the ready endpoints of the slices on that port.
pub fn resolve(
    qualified: &str,
    service: &Service,
    slices: &[EndpointSlice],
    wanted: Option<&WantedPort>,
) -> Result<Vec<SocketAddr>, String> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default();
    let describe = || {
        ports
            .iter()
            .map(|port| match port.name.as_deref() {
                Some(name) if !name.is_empty() => format!("{name} ({})", port.port),
                _ => port.port.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match wanted {
        None => match ports {
            [only] => only,
            [] => return Err(format!("the cache Service {qualified} has no port")),
            _ => {
                return Err(format!(
                    "the cache Service {qualified} has the ports {}: name one, as <service>:<port>",
                    describe()
                ));
            }
        },
        Some(wanted) => ports
            .iter()
            .find(|port| match wanted {
                WantedPort::Number(number) => port.port == i32::from(*number),
                WantedPort::Name(name) => port.name.as_deref() == Some(name.as_str()),
            })
            .ok_or_else(|| {
                let wanted = match wanted {
                    WantedPort::Number(number) => number.to_string(),
                    WantedPort::Name(name) => name.clone(),
                };
                format!(
                    "the cache Service {qualified} has no port {wanted}; it has {}",
                    describe()
                )
            })?,
    };
    // A slice names its ports as the Service does (unnamed: "").
    let port_name = chosen.name.as_deref().unwrap_or_default();
    let mut endpoints = BTreeSet::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(target_port) = slice.ports.iter().flatten().find_map(|port| {
            (port.name.as_deref().unwrap_or_default() == port_name)
                .then_some(port.port)
                .flatten()
                .and_then(|number| u16::try_from(number).ok())
        }) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            // `ready` unset counts as ready (discovery/v1); terminating
            // endpoints are not ready.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true);
            let address = endpoint
                .addresses
                .first()
                .and_then(|address| address.parse::<IpAddr>().ok());
            if let (true, Some(address)) = (ready, address) {
                endpoints.insert(SocketAddr::new(address, target_port));
            }
        }
    }
    if endpoints.is_empty() {
        return Err(format!(
            "the cache Service {qualified} has no ready endpoint on port {}: no cache to purge",
            if port_name.is_empty() {
                chosen.port.to_string()
            } else {
                port_name.to_owned()
            }
        ));
    }
    Ok(endpoints.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Varnish with its site port and its purge port.
    fn varnish() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "varnish", "namespace": "web"},
            "spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 6081},
                {"name": "purge", "port": 6091, "targetPort": "purge"}
            ]}
        }))
        .unwrap()
    }

    /// A slice with the Service's two ports and these (address, ready) endpoints.
    fn slice(address_type: &str, endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "varnish-abc12", "labels": {"kubernetes.io/service-name": "varnish"}},
            "addressType": address_type,
            "ports": [{"name": "http", "port": 6081}, {"name": "purge", "port": 6091}],
            "endpoints": endpoints.iter().map(|(address, ready)| {
                let mut conditions = json!({});
                if let Some(ready) = ready {
                    conditions["ready"] = json!(ready);
                }
                json!({"addresses": [address], "conditions": conditions})
            }).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    fn named(name: &str) -> Option<WantedPort> {
        Some(WantedPort::Name(name.to_owned()))
    }

    #[test]
    fn every_ready_endpoint_on_the_named_port_in_order() {
        let slices = [
            slice(
                "IPv4",
                &[
                    ("10.0.0.9", Some(true)),
                    ("10.0.0.3", None),
                    ("10.0.0.5", Some(false)),
                ],
            ),
            slice("IPv6", &[("fd00::7", Some(true))]),
            // Another slice of the same endpoint is counted once.
            slice("IPv4", &[("10.0.0.3", Some(true))]),
            slice("FQDN", &[("cache.example.com", Some(true))]),
        ];
        let endpoints =
            resolve("web/varnish", &varnish(), &slices, named("purge").as_ref()).unwrap();
        let shown: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.3:6091", "10.0.0.9:6091", "[fd00::7]:6091"]);
    }

    #[test]
    fn the_service_port_maps_to_the_endpoints_target_port() {
        let slices = [slice("IPv4", &[("10.0.0.3", Some(true))])];
        for wanted in [Some(WantedPort::Number(80)), named("http")] {
            let endpoints = resolve("web/varnish", &varnish(), &slices, wanted.as_ref()).unwrap();
            assert_eq!(endpoints, ["10.0.0.3:6081".parse::<SocketAddr>().unwrap()]);
        }
    }

    #[test]
    fn an_unnamed_only_port_needs_no_name() {
        let service: Service = serde_json::from_value(json!({
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {}, "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.4"]}]
        }))
        .unwrap();
        assert_eq!(
            resolve("web/souin", &service, &[slice], None).unwrap(),
            ["10.0.0.4:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn what_cannot_be_purged_is_said() {
        let slices = [slice("IPv4", &[("10.0.0.5", Some(false))])];
        for (wanted, message) in [
            (
                None,
                "the cache Service web/varnish has the ports http (80), purge (6091): name one, as <service>:<port>",
            ),
            (
                Some(WantedPort::Number(8080)),
                "the cache Service web/varnish has no port 8080; it has http (80), purge (6091)",
            ),
            (
                named("admin"),
                "the cache Service web/varnish has no port admin; it has http (80), purge (6091)",
            ),
            (
                named("purge"),
                "the cache Service web/varnish has no ready endpoint on port purge: no cache to purge",
            ),
        ] {
            assert_eq!(
                resolve("web/varnish", &varnish(), &slices, wanted.as_ref()).unwrap_err(),
                message
            );
        }
    }
}
