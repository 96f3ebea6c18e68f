# The (default) Firestore database in Native mode, and TTL policies that let Firestore delete
# expired delivery, audit, conditional-request cache, monitor health and scout scan documents (the
# runtime writes expire_at on each). The collections mirror TTL_FIELDS in shared/topology.py.

locals {
  ttl_fields = {
    deliveries = "expire_at"
    audit      = "expire_at"
    http_cache = "expire_at"
    # The collection group of the monitor's hourly buckets and its per-minute release health.
    health = "expire_at"
    # The collection group of the repo scout's scan snapshots.
    scans = "expire_at"
  }
}

resource "google_firestore_database" "default" {
  count = var.create_firestore_database ? 1 : 0

  project                 = var.project_id
  name                    = "(default)"
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  delete_protection_state = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy         = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.api]
}

resource "google_firestore_field" "ttl" {
  for_each = local.ttl_fields

  project    = var.project_id
  database   = "(default)"
  collection = each.key
  field      = each.value

  ttl_config {}

  # Nothing queries expire_at: no single-field indexes, and no write hotspot on a rising timestamp.
  index_config {}

  depends_on = [
    google_project_service.api,
    google_firestore_database.default,
  ]
}
