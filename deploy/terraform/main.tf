# dop on AWS: one image, three ECS Fargate services behind one ALB, one RDS
# MySQL instance holding the three role databases, Amazon MQ for RabbitMQ.
# docs/deploy.md walks through deploy and teardown.

# Two AZs, named rather than "the first two available", so that the subnets
# never move when AWS adds or retires a zone.
data "aws_availability_zones" "selected" {
  state = "available"

  filter {
    name   = "zone-name"
    values = length(var.availability_zones) > 0 ? var.availability_zones : ["${var.aws_region}a", "${var.aws_region}b"]
  }

  lifecycle {
    postcondition {
      condition     = length(self.names) == 2
      error_message = "Need exactly two available AZs; set availability_zones to two zone names of this region (this account may not have the region's a and b zones)."
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  name       = var.project
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = sort(data.aws_availability_zones.selected.names)
  https      = var.certificate_arn != ""

  # One entry per role of the one binary: its port, its database, the
  # variable that carries its database URL and the ALB paths routed to it.
  roles = {
    order = {
      port     = 8081
      database = "orders_db"
      db_env   = "DOP_ORDER__DATABASE_URL"
      paths    = ["/orders*", "/admin*"]
      priority = 10
    }
    inventory = {
      port     = 8082
      database = "inventory_db"
      db_env   = "DOP_INVENTORY__DATABASE_URL"
      paths    = ["/inventory*"]
      priority = 20
    }
    payment = {
      port     = 8083
      database = "payments_db"
      db_env   = "DOP_PAYMENT__DATABASE_URL"
      paths    = ["/payments*"]
      priority = 30
    }
  }

  image = "${aws_ecr_repository.dop.repository_url}:${var.image_tag}"
}
