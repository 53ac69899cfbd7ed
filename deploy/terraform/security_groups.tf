# Who may talk to whom: internet -> ALB -> tasks -> {RDS, Amazon MQ, AWS APIs}.
# Every rule names one peer and one port; nothing else is open.

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "dop ALB: HTTP(S) in from allowed_ingress_cidrs, out to the role tasks"
  vpc_id      = aws_vpc.this.id
}

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "dop ECS tasks: role ports in from the ALB, out to RDS, Amazon MQ and AWS APIs"
  vpc_id      = aws_vpc.this.id
}

resource "aws_security_group" "db" {
  name        = "${local.name}-db"
  description = "dop RDS MySQL: 3306 in from the tasks only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_security_group" "mq" {
  name        = "${local.name}-mq"
  description = "dop Amazon MQ: AMQPS 5671 in from the tasks only"
  vpc_id      = aws_vpc.this.id
}

# -------------------------------------------------------------------- ALB ---

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each = toset(var.allowed_ingress_cidrs)

  #checkov:skip=CKV_AWS_260:Port 80 only answers with a 301 to HTTPS (alb.tf, aws_lb_listener.http); the public customer API needs it for clients that type the bare host name.
  security_group_id = aws_security_group.alb.id
  description       = "HTTP (redirect to HTTPS) from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  # operator_cidrs too: the operator API is only routed for them, and they
  # must get through the security group to reach it.
  for_each = setunion(var.allowed_ingress_cidrs, var.operator_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  for_each = local.roles

  security_group_id            = aws_security_group.alb.id
  description                  = "to the ${each.key} tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

# ------------------------------------------------------------------ tasks ---

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  for_each = local.roles

  security_group_id            = aws_security_group.tasks.id
  description                  = "${each.key} port from the ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (ECR, Secrets Manager, CloudWatch Logs) through the NAT gateway and the S3 endpoint"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_db" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "MySQL on RDS"
  referenced_security_group_id = aws_security_group.db.id
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_mq" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "AMQPS on Amazon MQ"
  referenced_security_group_id = aws_security_group.mq.id
  ip_protocol                  = "tcp"
  from_port                    = 5671
  to_port                      = 5671
}

# ------------------------------------------------------------- RDS and MQ ---

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  security_group_id            = aws_security_group.db.id
  description                  = "MySQL from the dop tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
}

resource "aws_vpc_security_group_ingress_rule" "mq_from_tasks" {
  security_group_id            = aws_security_group.mq.id
  description                  = "AMQPS from the dop tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 5671
  to_port                      = 5671
}
