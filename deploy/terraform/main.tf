# dop on AWS: one image, three ECS Fargate services behind one HTTPS ALB (which
# forwards only the customer API, see alb.tf), one RDS
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

  # One entry per role of the one binary: its port, its database, the
  # variable that carries its database URL, and the bearer tokens it checks
  # (Secrets Manager names, see secrets.tf). order serves /admin/* (read and
  # operator); inventory needs the operator token for POST/PUT /inventory;
  # payment serves GET /payments/{order_id} only and needs none.
  roles = {
    order = {
      port     = 8081
      database = "orders_db"
      db_env   = "DOP_ORDER__DATABASE_URL"
      ca_env   = "DOP_ORDER__DATABASE_CA_FILE"
      tokens   = { DOP_ADMIN__TOKEN = "admin-token", DOP_ADMIN__READ_TOKEN = "admin-read-token" }
    }
    inventory = {
      port     = 8082
      database = "inventory_db"
      db_env   = "DOP_INVENTORY__DATABASE_URL"
      ca_env   = "DOP_INVENTORY__DATABASE_CA_FILE"
      tokens   = { DOP_ADMIN__TOKEN = "admin-token" }
    }
    payment = {
      port     = 8083
      database = "payments_db"
      db_env   = "DOP_PAYMENT__DATABASE_URL"
      ca_env   = "DOP_PAYMENT__DATABASE_CA_FILE"
      tokens   = {}
    }
  }

  # What the ALB routes for everyone (allowed_ingress_cidrs): the customer
  # API and nothing else, matched on method and path.
  public_routes = {
    create-order = { role = "order", priority = 10, methods = ["POST"], paths = ["/orders"] }
    get-order    = { role = "order", priority = 20, methods = ["GET"], paths = ["/orders/*"] }
    get-payment  = { role = "payment", priority = 30, methods = ["GET"], paths = ["/payments/*"] }
  }

  # What the ALB routes only for operator_cidrs. GET /orders (the listing by
  # ?user_id=) is told apart from the public POST /orders by its method, so no
  # query-string condition is needed. methods = [] matches every method.
  # The operator console (/console) is the admin API's page: it goes where
  # the admin API goes and nowhere else.
  operator_routes = {
    admin       = { role = "order", offset = 1, methods = [], paths = ["/admin", "/admin/*"] }
    list-orders = { role = "order", offset = 2, methods = ["GET"], paths = ["/orders"] }
    inventory   = { role = "inventory", offset = 3, methods = [], paths = ["/inventory", "/inventory/*"] }
    console     = { role = "order", offset = 4, methods = ["GET"], paths = ["/console", "/console/*"] }
  }

  # One listener rule per operator route and CIDR (an ALB rule takes at most
  # five condition values, so the CIDRs cannot share one rule).
  operator_rules = merge([
    for i, cidr in var.operator_cidrs : {
      for k, r in local.operator_routes : "${k} ${cidr}" => merge(r, { cidr = cidr, priority = 100 + 10 * i + r.offset })
    }
  ]...)

  # Roles with at least one listener rule forwarding to them.
  routed_roles = toset(concat(
    [for r in local.public_routes : r.role],
    [for r in local.operator_rules : r.role],
  ))

  image = "${aws_ecr_repository.dop.repository_url}:${var.image_tag}"
}
