# Amazon MQ for RabbitMQ: one single-instance broker in a private subnet,
# reached over AMQPS on 5671 (Amazon MQ accepts no plain AMQP).

resource "aws_mq_broker" "rabbitmq" {
  #checkov:skip=CKV_AWS_209:Encryption options do not apply to Amazon MQ for RabbitMQ: its storage is encrypted with an AWS-owned key, and a customer-managed key cannot be chosen.
  broker_name                = "${local.name}-rabbitmq"
  engine_type                = "RabbitMQ"
  engine_version             = var.mq_engine_version
  host_instance_type         = var.mq_instance_type
  deployment_mode            = "SINGLE_INSTANCE"
  publicly_accessible        = false
  subnet_ids                 = [aws_subnet.private[0].id]
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
}
