# `terraform test` with a mocked AWS provider: plans and "applies" the whole
# configuration without credentials or an AWS account, and checks what the
# design fixes (one image, three `serve --role X` services, path routing, the
# secrets' URLs). scripts/check-static.sh runs it where the AWS provider is
# available offline.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = {
      names = ["us-east-1a", "us-east-1b"]
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{}"
    }
  }

  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/dop"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:dop"
    }
  }

  mock_resource "aws_secretsmanager_secret" {
    defaults = {
      arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dop-AbCdEf"
    }
  }

  mock_resource "aws_ecr_repository" {
    defaults = {
      arn            = "arn:aws:ecr:us-east-1:123456789012:repository/dop"
      repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dop"
    }
  }

  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/dop-alb/0123456789abcdef"
      dns_name = "dop-alb-123456789.us-east-1.elb.amazonaws.com"
    }
  }

  mock_resource "aws_lb_listener" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/dop-alb/0123456789abcdef/0123456789abcdef"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/dop/0123456789abcdef"
    }
  }

  mock_resource "aws_db_instance" {
    defaults = {
      address  = "dop-mysql.abcdefghijkl.us-east-1.rds.amazonaws.com"
      port     = 3306
      endpoint = "dop-mysql.abcdefghijkl.us-east-1.rds.amazonaws.com:3306"
    }
  }

  mock_resource "aws_mq_broker" {
    defaults = {
      instances = [{
        console_url = "https://b-0000.mq.us-east-1.amazonaws.com"
        ip_address  = "10.40.10.10"
        endpoints   = ["amqps://b-0000.mq.us-east-1.amazonaws.com:5671"]
      }]
    }
  }

  mock_resource "aws_ecs_cluster" {
    defaults = {
      arn = "arn:aws:ecs:us-east-1:123456789012:cluster/dop"
    }
  }

  mock_resource "aws_ecs_task_definition" {
    defaults = {
      arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/dop:1"
    }
  }
}

variables {
  image_tag       = "0123456789ab"
  certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
}

run "stack" {
  command = apply

  assert {
    condition     = output.alb_url == "https://dop-alb-123456789.us-east-1.elb.amazonaws.com"
    error_message = "alb_url is not the ALB's HTTPS URL"
  }

  assert {
    condition     = length(aws_ecr_repository.dop) > 0 && output.ecr_repository_url == "123456789012.dkr.ecr.us-east-1.amazonaws.com/dop"
    error_message = "ecr_repository_url is not the one repository"
  }

  assert {
    condition     = toset(keys(aws_ecs_service.role)) == toset(["order", "inventory", "payment"])
    error_message = "want exactly the order, inventory and payment services"
  }

  assert {
    condition = alltrue([
      for role, td in aws_ecs_task_definition.role :
      jsondecode(td.container_definitions)[0].command == ["serve", "--role", role]
    ])
    error_message = "every service must run `serve --role <its role>`"
  }

  assert {
    condition = alltrue([
      for role, td in aws_ecs_task_definition.role :
      jsondecode(td.container_definitions)[0].image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/dop:0123456789ab"
    ])
    error_message = "every service must run the one image at image_tag"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0].command == ["migrate"]
    error_message = "the migrate task must run `dop migrate`"
  }

  assert {
    condition = jsonencode({
      for k, rule in aws_lb_listener_rule.public : k => [
        rule.action[0].target_group_arn,
        sort(flatten([for c in rule.condition : [for m in c.http_request_method : m.values]])),
        sort(flatten([for c in rule.condition : [for p in c.path_pattern : p.values]])),
      ]
      }) == jsonencode({
      create-order = [aws_lb_target_group.role["order"].arn, ["POST"], ["/orders"]]
      get-order    = [aws_lb_target_group.role["order"].arn, ["GET"], ["/orders/*"]]
      get-payment  = [aws_lb_target_group.role["payment"].arn, ["GET"], ["/payments/*"]]
    })
    error_message = "the public routes must be exactly POST /orders, GET /orders/* and GET /payments/*"
  }

  assert {
    condition     = length(aws_lb_listener_rule.operator) == 0
    error_message = "with operator_cidrs empty, no operator route may exist"
  }

  assert {
    condition     = one(aws_lb_listener.http.default_action).type == "redirect" && one(one(aws_lb_listener.http.default_action).redirect).protocol == "HTTPS"
    error_message = "port 80 must only redirect to HTTPS"
  }

  assert {
    condition     = aws_lb_listener.https.protocol == "HTTPS" && aws_lb_listener.https.ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06" && one(aws_lb_listener.https.default_action).type == "fixed-response"
    error_message = "the HTTPS listener must use the TLS 1.3/1.2 policy and answer 404 by default"
  }

  assert {
    condition = jsonencode({
      for role, td in aws_ecs_task_definition.role : role => sort([
        for s in jsondecode(td.container_definitions)[0].secrets : s.name if startswith(s.name, "DOP_ADMIN__")
      ])
      }) == jsonencode({
      order     = ["DOP_ADMIN__READ_TOKEN", "DOP_ADMIN__TOKEN"]
      inventory = ["DOP_ADMIN__TOKEN"]
      payment   = []
    })
    error_message = "order needs both tokens, inventory the operator token, payment none, all as ECS secrets"
  }

  assert {
    condition     = length(aws_ecs_service.role["inventory"].load_balancer) == 0 && length(aws_ecs_service.role["order"].load_balancer) == 1
    error_message = "inventory is not behind the ALB while operator_cidrs is empty"
  }

  assert {
    condition     = alltrue([for tg in aws_lb_target_group.role : one(tg.health_check).path == "/health"])
    error_message = "target groups must probe /health"
  }

  assert {
    condition     = can(regex("^mysql://dop_admin:[A-Za-z0-9]{32}@dop-mysql\\.abcdefghijkl\\.us-east-1\\.rds\\.amazonaws\\.com:3306/inventory_db\\?require_ssl=true&verify_ca=true$", nonsensitive(aws_secretsmanager_secret_version.dop["inventory-database-url"].secret_string)))
    error_message = "the inventory database URL secret is not mysql://user:pass@rds:3306/inventory_db?require_ssl=true&verify_ca=true"
  }

  assert {
    condition     = can(regex("^amqps://dop:[A-Za-z0-9]{32}@b-0000\\.mq\\.us-east-1\\.amazonaws\\.com:5671/%2f$", nonsensitive(aws_secretsmanager_secret_version.dop["rabbitmq-url"].secret_string)))
    error_message = "the RabbitMQ URL secret is not amqps://user:pass@broker:5671/%2f"
  }

  assert {
    condition     = alltrue([for g in aws_cloudwatch_log_group.tasks : g.retention_in_days > 0])
    error_message = "task log groups need a retention"
  }
}

run "operator_cidrs_open_the_operator_api_to_them_only" {
  command = apply

  variables {
    operator_cidrs = ["203.0.113.0/28", "198.51.100.7/32"]
  }

  assert {
    condition     = length(aws_lb_listener_rule.operator) == 8
    error_message = "want four operator rules (admin, list-orders, inventory, console) per CIDR"
  }

  assert {
    condition = alltrue([
      for rule in aws_lb_listener_rule.operator :
      length([for c in rule.condition : c if length(c.source_ip) == 1]) == 1
    ])
    error_message = "every operator rule must be limited by a source_ip condition"
  }

  assert {
    condition     = length(aws_ecs_service.role["inventory"].load_balancer) == 1
    error_message = "with operator_cidrs set, inventory is behind the ALB"
  }
}

run "refuses_a_world_open_operator_api" {
  command = plan

  variables {
    operator_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.operator_cidrs]
}

run "refuses_unverified_database_tls" {
  command = plan

  variables {
    db_url_params = "require_ssl=true&verify_ca=false"
  }

  expect_failures = [var.db_url_params]
}

run "refuses_an_empty_image_tag" {
  command = plan

  variables {
    image_tag = ""
  }

  expect_failures = [aws_ecs_task_definition.role, aws_ecs_task_definition.migrate]
}

run "one_task_per_role_a_single_broker_and_no_autoscaling_by_default" {
  command = plan

  assert {
    condition     = alltrue([for s in aws_ecs_service.role : s.desired_count == 1])
    error_message = "every role runs one task by default"
  }

  assert {
    condition     = length(aws_appautoscaling_target.role) == 0 && length(aws_appautoscaling_policy.queue_backlog) == 0 && length(aws_appautoscaling_policy.order_cpu) == 0
    error_message = "autoscaling is off by default"
  }

  assert {
    condition     = aws_mq_broker.rabbitmq.deployment_mode == "SINGLE_INSTANCE" && aws_db_instance.mysql.multi_az == false
    error_message = "a single-instance broker and a single-AZ database by default"
  }

  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.role :
      !contains([for e in jsondecode(td.container_definitions)[0].environment : e.name], "DOP_RABBITMQ__QUEUE_TYPE")
    ])
    error_message = "a single broker keeps dop's default queue type"
  }
}

run "replicas_scale_on_cpu_and_on_their_queue" {
  command = apply

  variables {
    desired_count         = 2
    desired_counts        = { payment = 3 }
    autoscaling_max_count = 6
  }

  assert {
    condition     = aws_ecs_service.role["order"].desired_count == 2 && aws_ecs_service.role["inventory"].desired_count == 2 && aws_ecs_service.role["payment"].desired_count == 3
    error_message = "desired_counts overrides desired_count for the roles it names"
  }

  assert {
    condition = jsonencode({ for r, t in aws_appautoscaling_target.role : r => [t.min_capacity, t.max_capacity, t.resource_id] }) == jsonencode({
      inventory = [2, 6, "service/dop/dop-inventory"]
      order     = [2, 6, "service/dop/dop-order"]
      payment   = [3, 6, "service/dop/dop-payment"]
    })
    error_message = "every role scales between its desired count and autoscaling_max_count"
  }

  assert {
    condition     = one(one(aws_appautoscaling_policy.order_cpu[0].target_tracking_scaling_policy_configuration).predefined_metric_specification).predefined_metric_type == "ECSServiceAverageCPUUtilization"
    error_message = "the order role scales on its average CPU"
  }

  assert {
    condition = jsonencode({
      for r, p in aws_appautoscaling_policy.queue_backlog : r => {
        for d in flatten([
          for m in one(one(p.target_tracking_scaling_policy_configuration).customized_metric_specification).metrics :
          [for s in m.metric_stat : [for x in s.metric : x.dimensions if x.namespace == "AWS/AmazonMQ"]]
        ]) : d.name => d.value
      }
      }) == jsonencode({
      inventory = { Broker = "dop-rabbitmq", Queue = "inventory.commands", VirtualHost = "/" }
      payment   = { Broker = "dop-rabbitmq", Queue = "payment.commands", VirtualHost = "/" }
    })
    error_message = "inventory and payment scale on the depth of their own command queue"
  }
}

run "a_cluster_broker_means_quorum_queues_and_production_means_multi_az" {
  command = plan

  variables {
    mq_deployment_mode = "CLUSTER_MULTI_AZ"
    mq_instance_type   = "mq.m5.large"
    db_multi_az        = true
  }

  assert {
    condition     = aws_mq_broker.rabbitmq.deployment_mode == "CLUSTER_MULTI_AZ" && length(aws_mq_broker.rabbitmq.subnet_ids) == 2
    error_message = "the cluster spans both private subnets"
  }

  assert {
    condition = alltrue([
      for td in aws_ecs_task_definition.role :
      contains([for e in jsondecode(td.container_definitions)[0].environment : "${e.name}=${e.value}"], "DOP_RABBITMQ__QUEUE_TYPE=quorum")
    ])
    error_message = "on a cluster every role declares quorum queues"
  }

  assert {
    condition     = aws_db_instance.mysql.multi_az
    error_message = "db_multi_az turns on the RDS standby"
  }
}

run "refuses_a_cluster_of_micro_brokers" {
  command = plan

  variables {
    mq_deployment_mode = "CLUSTER_MULTI_AZ"
  }

  expect_failures = [aws_mq_broker.rabbitmq]
}
