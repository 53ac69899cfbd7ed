# One RDS MySQL 8 instance, Multi-AZ when var.db_multi_az. The three role
# databases (orders_db, inventory_db, payments_db) are not created here:
# `dop migrate`, run as a one-off ECS task by deploy.sh, creates them and
# applies the embedded migrations, and each role's `serve` applies its own
# pending migrations at start.

resource "aws_db_subnet_group" "mysql" {
  name       = "${local.name}-mysql"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_db_parameter_group" "mysql" {
  name   = "${local.name}-mysql"
  family = var.db_parameter_group_family

  # innodb_buffer_pool_size and innodb_redo_log_capacity are left to
  # innodb_dedicated_server, on by default for MySQL 8.4 on RDS: it sizes
  # both from the instance class (see var.db_instance_class), and the redo
  # log it gives a 2-vCPU class, 1 GiB, is what docs/operations.md
  # ("Sizing") asks for at 1,000 orders/s.

  # TLS only: dop connects with require_ssl=true.
  parameter {
    name  = "require_secure_transport"
    value = "1"
  }

  parameter {
    name  = "slow_query_log"
    value = "1"
  }

  parameter {
    name  = "long_query_time"
    value = "1"
  }

  parameter {
    name  = "log_output"
    value = "FILE"
  }
}

# The log groups RDS exports to, created here so that they get a retention and
# the key; RDS would otherwise create them without either.
resource "aws_cloudwatch_log_group" "rds" {
  for_each = toset(["error", "slowquery"])

  name              = "/aws/rds/instance/${local.name}-mysql/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.dop.arn
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${local.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "mysql" {
  #checkov:skip=CKV_AWS_157:Multi-AZ follows var.db_multi_az, off by default because it doubles the database cost of a demo; the production example turns it on.
  #checkov:skip=CKV_AWS_293:Deletion protection follows var.deletion_protection, off by default so that destroy.sh can return the account to nothing.
  #checkov:skip=CKV_AWS_353:Performance Insights (now CloudWatch Database Insights) is not supported for RDS for MySQL on db.t4g.micro, the default class.
  #checkov:skip=CKV_AWS_354:Performance Insights is off (see CKV_AWS_353), so there is nothing for its key to encrypt.
  identifier     = "${local.name}-mysql"
  engine         = "mysql"
  engine_version = var.db_engine_version
  # Refuse RDS Extended Support (billed per vCPU-hour past a major version's
  # end of standard support) rather than pay it silently.
  engine_lifecycle_support = "open-source-rds-extended-support-disabled"
  instance_class           = var.db_instance_class

  # Storage autoscaling: start small, let RDS grow the volume as the tables
  # grow (about 0.2 GB per day per order/s, docs/operations.md "Sizing"),
  # up to a ceiling that costs nothing until it is used.
  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.dop.arn

  username                            = var.db_username
  password                            = random_password.db.result
  iam_database_authentication_enabled = true

  db_subnet_group_name   = aws_db_subnet_group.mysql.name
  vpc_security_group_ids = [aws_security_group.db.id]
  parameter_group_name   = aws_db_parameter_group.mysql.name
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period    = var.db_backup_retention_days
  copy_tags_to_snapshot      = true
  auto_minor_version_upgrade = true
  apply_immediately          = true
  deletion_protection        = var.deletion_protection
  # destroy.sh returns the account to nothing: no final snapshot to pay for.
  skip_final_snapshot = true

  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports = ["error", "slowquery"]

  lifecycle {
    precondition {
      condition     = var.db_max_allocated_storage >= var.db_allocated_storage
      error_message = "db_max_allocated_storage (the storage autoscaling ceiling) must be at least db_allocated_storage."
    }
  }

  depends_on = [aws_cloudwatch_log_group.rds, aws_iam_role_policy_attachment.rds_monitoring]
}
