# ECS service autoscaling, on when var.autoscaling_max_count > 0. Every role
# runs between its desired count (the floor) and autoscaling_max_count tasks.
# Replicas of a role need no coordination (docs/scaling.md): they share the
# role's database and its one command or event queue, which RabbitMQ hands
# out across their consumers.
#
# - order: target tracking on the service's average CPU. Its work per request
#   is CPU in the task (HTTP, JSON, the batched writes); the queue it
#   consumes (order.events) grows only when inventory or payment answer
#   faster than it can, which CPU shows first.
# - inventory, payment: target tracking on the messages waiting in their
#   command queue per running task. A backlog is what a slow consumer
#   leaves, whatever the cause; CPU alone would miss a role waiting on the
#   database.

locals {
  autoscaling = var.autoscaling_max_count > 0

  # The command queue each queue-driven role consumes (src/messaging/topology.rs).
  command_queues = {
    inventory = "inventory.commands"
    payment   = "payment.commands"
  }

  # The vhost the roles use: "/" (%2f in the rabbitmq-url secret, secrets.tf).
  mq_vhost = "/"
}

resource "aws_appautoscaling_target" "role" {
  for_each = local.autoscaling ? local.roles : {}

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.role[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = local.desired_counts[each.key]
  max_capacity       = max(var.autoscaling_max_count, local.desired_counts[each.key])
}

resource "aws_appautoscaling_policy" "order_cpu" {
  count = local.autoscaling ? 1 : 0

  name               = "${local.name}-order-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.role["order"].service_namespace
  resource_id        = aws_appautoscaling_target.role["order"].resource_id
  scalable_dimension = aws_appautoscaling_target.role["order"].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.order_cpu_target
    scale_out_cooldown = 60
    # Scale in slowly: a stopped replica finishes its requests and flushes
    # its outbox (SIGTERM, stopTimeout), but a new one costs a start.
    scale_in_cooldown = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "queue_backlog" {
  for_each = local.autoscaling ? local.command_queues : {}

  name               = "${local.name}-${each.key}-queue-backlog"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.role[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.role[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.role[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.queue_backlog_per_task
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    # Messages waiting per running task: the queue's MessageCount (ready
    # plus unacknowledged; Amazon MQ publishes it per queue, dimensions
    # Broker, VirtualHost, Queue, for the RabbitMQ 3.x engines; see
    # var.queue_backlog_per_task) over the service's RunningTaskCount
    # (Container Insights, on for the cluster in ecs.tf).
    customized_metric_specification {
      metrics {
        id          = "waiting"
        label       = "messages in ${each.value}"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "AWS/AmazonMQ"
            metric_name = "MessageCount"

            dimensions {
              name  = "Broker"
              value = aws_mq_broker.rabbitmq.broker_name
            }

            dimensions {
              name  = "VirtualHost"
              value = local.mq_vhost
            }

            dimensions {
              name  = "Queue"
              value = each.value
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "running tasks of ${each.key}"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.role[each.key].name
            }
          }
        }
      }

      metrics {
        id          = "per_task"
        label       = "messages waiting per ${each.key} task"
        expression  = "IF(tasks > 0, waiting / tasks, waiting)"
        return_data = true
      }
    }
  }
}
