# Amazon MQ for RabbitMQ in the private subnets, reached over AMQPS on 5671
# (Amazon MQ accepts no plain AMQP): one node (SINGLE_INSTANCE, the default),
# or three nodes across the AZs behind one endpoint (CLUSTER_MULTI_AZ, see
# var.mq_deployment_mode), where the roles declare quorum queues (ecs.tf).

locals {
  mq_cluster = var.mq_deployment_mode == "CLUSTER_MULTI_AZ"
}

resource "aws_mq_broker" "rabbitmq" {
  #checkov:skip=CKV_AWS_209:Encryption options do not apply to Amazon MQ for RabbitMQ: its storage is encrypted with an AWS-owned key, and a customer-managed key cannot be chosen.
  broker_name                = "${local.name}-rabbitmq"
  engine_type                = "RabbitMQ"
  engine_version             = var.mq_engine_version
  host_instance_type         = var.mq_instance_type
  deployment_mode            = var.mq_deployment_mode
  publicly_accessible        = false
  subnet_ids                 = local.mq_cluster ? aws_subnet.private[*].id : [aws_subnet.private[0].id]
  security_groups            = [aws_security_group.mq.id]
  auto_minor_version_upgrade = true
  apply_immediately          = true

  logs {
    general = true
  }

  user {
    username = var.mq_username
    password = random_password.mq.result
  }

  lifecycle {
    precondition {
      condition     = !local.mq_cluster || !startswith(var.mq_instance_type, "mq.t3.")
      error_message = "A CLUSTER_MULTI_AZ broker needs mq_instance_type mq.m5.large or larger (mq.t3.micro is single-instance only)."
    }
  }
}
