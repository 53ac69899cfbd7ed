# ECS Fargate: three services from the ONE image, each `dop serve --role X`,
# plus a one-off task definition for `dop migrate` that deploy.sh runs.

resource "aws_cloudwatch_log_group" "tasks" {
  for_each = toset(concat(keys(local.roles), ["migrate"]))

  name              = "/ecs/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.dop.arn
}

resource "aws_cloudwatch_log_group" "exec" {
  name              = "/ecs/${local.name}/exec"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.dop.arn
}

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      kms_key_id = aws_kms_key.dop.arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.exec.name
      }
    }
  }
}

locals {
  # What every role gets besides its own database URL.
  common_environment = concat(
    [
      { name = "DOP_LOG_FORMAT", value = "json" },
      { name = "PAYMENT_FAILURE_RATE", value = var.payment_failure_rate },
      { name = "INVENTORY_RESERVE_MAX_RETRIES", value = tostring(var.inventory_reserve_max_retries) },
    ],
    # A clustered broker: quorum queues, replicated over its nodes, so a
    # node that is down takes no message with it (docs/scaling.md).
    local.mq_cluster ? [{ name = "DOP_RABBITMQ__QUEUE_TYPE", value = "quorum" }] : [],
  )

  # Tasks per role (var.desired_counts overrides var.desired_count).
  desired_counts = { for r in keys(local.roles) : r => lookup(var.desired_counts, r, var.desired_count) }

  log_options = {
    for k, g in aws_cloudwatch_log_group.tasks : k => {
      "awslogs-group"         = g.name
      "awslogs-region"        = var.aws_region
      "awslogs-stream-prefix" = k
    }
  }
}

resource "aws_ecs_task_definition" "role" {
  for_each = local.roles

  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = local.image
    essential              = true
    command                = ["serve", "--role", each.key]
    readonlyRootFilesystem = true
    stopTimeout            = 30
    portMappings           = [{ containerPort = each.value.port, protocol = "tcp" }]
    environment = concat(local.common_environment, [
      { name = "HEALTHCHECK_PORT", value = tostring(each.value.port) },
      { name = each.value.ca_env, value = var.db_ca_file },
    ])
    secrets = concat(
      [
        { name = each.value.db_env, valueFrom = aws_secretsmanager_secret.dop["${each.key}-database-url"].arn },
        { name = "RABBITMQ_URL", valueFrom = aws_secretsmanager_secret.dop["rabbitmq-url"].arn },
      ],
      # The bearer tokens of the routes this role serves (locals.roles).
      [for env, secret in each.value.tokens : { name = env, valueFrom = aws_secretsmanager_secret.dop[secret].arn }],
    )
    healthCheck = {
      command     = ["CMD-SHELL", "curl -fsS -o /dev/null http://127.0.0.1:${each.value.port}/health || exit 1"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }
    logConfiguration = {
      logDriver = "awslogs"
      options   = local.log_options[each.key]
    }
  }])

  lifecycle {
    precondition {
      condition     = var.image_tag != ""
      error_message = "image_tag is empty: push an image first (deploy/scripts/build-and-push.sh) and pass its tag, or use deploy/scripts/deploy.sh."
    }
  }

  depends_on = [aws_secretsmanager_secret_version.dop]
}

# `dop migrate`: creates any missing database among orders_db, inventory_db and
# payments_db and applies pending migrations, then exits.
resource "aws_ecs_task_definition" "migrate" {
  family                   = "${local.name}-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = "migrate"
    image                  = local.image
    essential              = true
    command                = ["migrate"]
    readonlyRootFilesystem = true
    environment = concat(
      [{ name = "DOP_LOG_FORMAT", value = "json" }],
      [for r in local.roles : { name = r.ca_env, value = var.db_ca_file }],
    )
    secrets = [
      for role, r in local.roles : {
        name      = r.db_env
        valueFrom = aws_secretsmanager_secret.dop["${role}-database-url"].arn
      }
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options   = local.log_options["migrate"]
    }
  }])

  lifecycle {
    precondition {
      condition     = var.image_tag != ""
      error_message = "image_tag is empty: push an image first (deploy/scripts/build-and-push.sh) and pass its tag, or use deploy/scripts/deploy.sh."
    }
  }

  depends_on = [aws_secretsmanager_secret_version.dop]
}

resource "aws_ecs_service" "role" {
  for_each = local.roles

  name                              = "${local.name}-${each.key}"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.role[each.key].arn
  desired_count                     = local.desired_counts[each.key]
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = contains(local.routed_roles, each.key) ? 60 : null
  enable_ecs_managed_tags           = true
  propagate_tags                    = "SERVICE"
  wait_for_steady_state             = false

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  # Only roles the ALB routes to are registered in their target group: ECS
  # refuses a target group no listener rule uses, and inventory has none
  # while operator_cidrs is empty (its container health check still runs).
  dynamic "load_balancer" {
    for_each = contains(local.routed_roles, each.key) ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.role[each.key].arn
      container_name   = each.key
      container_port   = each.value.port
    }
  }

  # The target group must be behind a listener rule before a service can use
  # it, and the tasks need their permissions before the first one starts.
  depends_on = [aws_lb_listener_rule.public, aws_lb_listener_rule.operator, aws_iam_role_policy.execution, aws_nat_gateway.this]
}
