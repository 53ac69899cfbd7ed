output "alb_url" {
  description = "Base URL of the load balancer (HTTPS): POST /orders, GET /orders/{id}, GET /payments/{order_id}; point the certificate's DNS name at it."
  value       = "https://${aws_lb.this.dns_name}"
}

output "cluster_name" {
  description = "ECS cluster running the three role services."
  value       = aws_ecs_cluster.this.name
}

output "ecr_repository_url" {
  description = "The one ECR repository; build-and-push.sh pushes the dop image here."
  value       = aws_ecr_repository.dop.repository_url
}

output "aws_region" {
  description = "Region everything was created in."
  value       = var.aws_region
}

output "service_names" {
  description = "ECS service name per role."
  value       = { for role, s in aws_ecs_service.role : role => s.name }
}

output "migrate_task_definition" {
  description = "Task definition (family:revision) of the one-off `dop migrate` task."
  value       = "${aws_ecs_task_definition.migrate.family}:${aws_ecs_task_definition.migrate.revision}"
}

output "migrate_network_configuration" {
  description = "--network-configuration for `aws ecs run-task` of the migrate task (private subnets, tasks security group)."
  value       = "awsvpcConfiguration={subnets=[${join(",", aws_subnet.private[*].id)}],securityGroups=[${aws_security_group.tasks.id}],assignPublicIp=DISABLED}"
}

output "log_groups" {
  description = "CloudWatch log group per role (and migrate)."
  value       = { for k, g in aws_cloudwatch_log_group.tasks : k => g.name }
}

output "migrate_log_group" {
  description = "CloudWatch log group of the one-off migrate task."
  value       = aws_cloudwatch_log_group.tasks["migrate"].name
}

output "db_endpoint" {
  description = "RDS MySQL endpoint (host:port), reachable from the private subnets only."
  value       = aws_db_instance.mysql.endpoint
}

output "db_instance_identifier" {
  description = "RDS instance identifier."
  value       = aws_db_instance.mysql.identifier
}

output "mq_broker_id" {
  description = "Amazon MQ broker id; its log group /aws/amazonmq/broker/<id>/general is created by Amazon MQ and removed by destroy.sh."
  value       = aws_mq_broker.rabbitmq.id
}

output "mq_amqps_endpoint" {
  description = "Amazon MQ AMQPS endpoint, reachable from the private subnets only."
  value       = aws_mq_broker.rabbitmq.instances[0].endpoints[0]
}

output "admin_token" {
  description = "Operator bearer token (DOP_ADMIN__TOKEN): /admin/* on order, POST/PUT /inventory (terraform output -raw admin_token)."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "admin_read_token" {
  description = "Read-only bearer token (DOP_ADMIN__READ_TOKEN): the GET routes under /admin/* (terraform output -raw admin_read_token)."
  value       = random_password.admin_read_token.result
  sensitive   = true
}

output "admin_token_secret_arns" {
  description = "Secrets Manager ARNs of the two tokens; rotate by putting a new value and forcing a new deployment (docs/deploy.md)."
  value       = { for k in ["admin-token", "admin-read-token"] : k => aws_secretsmanager_secret.dop[k].arn }
}
