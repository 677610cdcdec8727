# The alert policies the local monitor evaluates (shared/salesmesh/alerts/policies.json, read
# in locals.tf), created in Cloud Monitoring. Incidents reach the alerts topic, and so
# alert_handler, through a Pub/Sub notification channel.

resource "google_monitoring_notification_channel" "alerts" {
  project      = var.project_id
  display_name = "salesmesh alerts topic"
  type         = "pubsub"
  user_labels  = var.labels

  labels = {
    topic = google_pubsub_topic.alerts.id
  }
}

resource "google_monitoring_alert_policy" "mesh" {
  for_each = { for policy in local.policies.policies : policy.name => policy }

  project               = var.project_id
  display_name          = each.value.display_name
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.alerts.id]
  user_labels           = var.labels

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.display_name

    condition_threshold {
      filter                  = each.value.filter
      denominator_filter      = try(each.value.denominator_filter, null)
      comparison              = each.value.comparison
      threshold_value         = each.value.threshold_value
      duration                = "${each.value.duration_seconds}s"
      evaluation_missing_data = each.value.evaluation_missing_data

      aggregations {
        alignment_period     = "${each.value.alignment_period_seconds}s"
        per_series_aligner   = each.value.aligner
        cross_series_reducer = each.value.reducer
        group_by_fields      = each.value.group_by
      }

      # a rate: errors over predictions, both aligned alike
      dynamic "denominator_aggregations" {
        for_each = try(each.value.denominator_filter, null) == null ? [] : [each.value]
        content {
          alignment_period     = "${denominator_aggregations.value.alignment_period_seconds}s"
          per_series_aligner   = denominator_aggregations.value.aligner
          cross_series_reducer = denominator_aggregations.value.reducer
          group_by_fields      = denominator_aggregations.value.group_by
        }
      }

      trigger {
        count = 1
      }
    }
  }

  # the channel's first incident must find its publisher grant in place
  depends_on = [google_pubsub_topic_iam_member.monitoring_publishes]
}
