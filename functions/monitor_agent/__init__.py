"""The monitor agent: probes each service's health endpoints, keeps SLOs and opens one incident per outage."""
