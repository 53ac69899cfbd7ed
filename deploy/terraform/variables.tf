variable "project" {
  description = "Name prefix of every resource (ECR repository, cluster, services, secrets)."
  type        = string
  default     = "dop"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.project))
    error_message = "project must be 2-15 lower-case letters, digits or dashes, starting with a letter (it prefixes names with length limits, e.g. target groups)."
  }
}

variable "environment" {
  description = "Environment tag value."
  type        = string
  default     = "demo"
}

variable "aws_region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- network ---

variable "vpc_cidr" {
  description = "CIDR of the VPC; public and private /24 subnets are carved from it in two AZs."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "The two AZs to use. Empty: the region's \"a\" and \"b\" zones."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 2
    error_message = "availability_zones takes exactly two zone names (or none)."
  }
}

variable "allowed_ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach the load balancer on 443 (HTTPS) and 80 (which only redirects to HTTPS). Only the customer API is routed for them: POST /orders, GET /orders/{id}, GET /payments/{order_id}."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "operator_cidrs" {
  description = "IPv4 CIDRs whose requests the ALB also routes to the operator API (/admin*, /inventory*, GET /orders?user_id=). Empty: the operator API is not reachable through the ALB at all; operators use `dop admin` from inside the VPC (docs/deploy.md). The bearer tokens are required either way."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.operator_cidrs) <= 20 && alltrue([for c in var.operator_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "operator_cidrs takes at most 20 IPv4 CIDRs (three listener rules each), each narrower than /0 (the operator API is never for everyone)."
  }
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate (same region) the HTTPS listener presents. Required: there is no plain-HTTP mode; set it in terraform.tfvars (docs/deploy.md, \"HTTPS\")."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-zA-Z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener: TLS 1.3 and 1.2 with forward-secret ciphers only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "enable_flow_logs" {
  description = "Send VPC flow logs (rejected traffic only) to CloudWatch Logs."
  type        = bool
  default     = true
}

# -------------------------------------------------------------- the image ---

variable "image_tag" {
  description = "Tag of the dop image in the ECR repository; deploy.sh passes the tag build-and-push.sh pushed (the git commit). Required for every apply that creates the services."
  type        = string
  default     = ""
}

variable "ecr_keep_images" {
  description = "How many images the ECR lifecycle policy keeps."
  type        = number
  default     = 20
}

# ------------------------------------------------------------ ECS services ---

variable "task_cpu" {
  description = "Fargate CPU units per task (256 = 0.25 vCPU)."
  type        = number
  default     = 256
}

variable "task_memory" {
  description = "Fargate memory per task, MiB."
  type        = number
  default     = 512
}

variable "desired_count" {
  description = "Tasks per role (order, inventory, payment) unless desired_counts names the role. With autoscaling on, the floor the autoscaler never goes below, and what every apply sets the count back to. Replicas of a role share its database and queues (docs/scaling.md)."
  type        = number
  default     = 1

  validation {
    condition     = var.desired_count >= 0
    error_message = "desired_count must not be negative."
  }
}

variable "desired_counts" {
  description = "Tasks of the roles named, overriding desired_count, e.g. { order = 2, inventory = 2, payment = 2 }."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for r, n in var.desired_counts : contains(["order", "inventory", "payment"], r) && n >= 0])
    error_message = "desired_counts takes the roles order, inventory and payment, each with a count of 0 or more."
  }
}

variable "autoscaling_max_count" {
  description = "Most tasks per role ECS service autoscaling may run; 0 turns autoscaling off. The order role scales on its average CPU (order_cpu_target), inventory and payment on the messages waiting in their command queue per running task (queue_backlog_per_task). Sizing: docs/scaling.md."
  type        = number
  default     = 0

  validation {
    condition     = var.autoscaling_max_count >= 0 && var.autoscaling_max_count <= 50
    error_message = "autoscaling_max_count must be 0 (off) to 50."
  }
}

variable "order_cpu_target" {
  description = "Average CPU utilisation (percent) of the order role's tasks that its autoscaling aims at."
  type        = number
  default     = 60

  validation {
    condition     = var.order_cpu_target >= 10 && var.order_cpu_target <= 90
    error_message = "order_cpu_target must be between 10 and 90 percent."
  }
}

variable "queue_backlog_per_task" {
  description = "Messages waiting (ready plus unacknowledged) in inventory.commands or payment.commands per running task that the inventory and payment autoscaling aims at. It reads Amazon MQ's per-queue MessageCount (dimensions Broker, VirtualHost, Queue), published for the RabbitMQ 3.x engines (mq_engine_version defaults to 3.13); check that the metric exists before moving to another engine line."
  type        = number
  default     = 400

  validation {
    condition     = var.queue_backlog_per_task >= 1
    error_message = "queue_backlog_per_task must be at least 1."
  }
}

variable "payment_failure_rate" {
  description = "PAYMENT_FAILURE_RATE for the payment role: share of payments declined, 0.0 to 1.0."
  type        = string
  default     = "0.0"

  validation {
    condition     = can(tonumber(var.payment_failure_rate)) && tonumber(var.payment_failure_rate) >= 0 && tonumber(var.payment_failure_rate) <= 1
    error_message = "payment_failure_rate must be a number between 0.0 and 1.0."
  }
}

variable "inventory_reserve_max_retries" {
  description = "INVENTORY_RESERVE_MAX_RETRIES for the inventory role."
  type        = number
  default     = 50
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups this stack creates. The stack's logs are small; destroy deletes the groups with everything else."
  type        = number
  default     = 365
}

# -------------------------------------------------------------------- RDS ---

variable "db_instance_class" {
  description = "RDS instance class of the one MySQL instance that holds orders_db, inventory_db and payments_db. MySQL 8.4 on RDS sizes the buffer pool from the class's memory (half of it up to 4 GB, three quarters above) and the redo log at half a GiB per vCPU. The pool must hold the orders index by user, about 48 bytes per order kept (docs/operations.md, \"Sizing\"): db.t4g.micro (a 0.5 GiB pool) suits trials; ten million orders kept want db.t4g.medium (2 GiB) or larger."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "RDS MySQL engine version (major.minor or major). 8.4 is the MySQL 8 LTS line; 8.0 is past RDS standard support and would be billed for Extended Support (refused here, see engine_lifecycle_support)."
  type        = string
  default     = "8.4"
}

variable "db_parameter_group_family" {
  description = "Parameter group family matching db_engine_version."
  type        = string
  default     = "mysql8.4"
}

variable "db_allocated_storage" {
  description = "Initial gp3 storage, GiB."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling, GiB: RDS grows the volume by itself, up to this, when free space runs low, and bills only what it has grown to. The three databases take about 2.4 KB per saga, 0.2 GB per day per order/s of average rate (docs/operations.md, \"Sizing\"): 1,000 GiB lasts about 45 days at an average 100 orders/s, or over a year at 10/s. Raise it (or archive) before a deployment gets there."
  type        = number
  default     = 1000
}

variable "db_multi_az" {
  description = "Run the RDS instance Multi-AZ: a synchronous standby in the other AZ that RDS fails over to (about a minute, same endpoint) when the primary or its AZ fails. Doubles the database cost; on for production."
  type        = bool
  default     = false
}

variable "db_username" {
  description = "RDS master user name; dop connects as this user (its password is generated)."
  type        = string
  default     = "dop_admin"
}

variable "db_url_params" {
  description = <<-EOT
    Query string appended to every MySQL URL (mysql_async options). TLS is
    required (require_ssl=true in dop, require_secure_transport on RDS) and
    the server certificate is verified (verify_ca=true) against the RDS CA
    bundle named by db_ca_file, which must be in the image (docs/deploy.md,
    "TLS to RDS"). Never turn verify_ca off outside a throwaway test.
  EOT
  type        = string
  default     = "require_ssl=true&verify_ca=true"

  validation {
    condition     = strcontains(var.db_url_params, "require_ssl=true") && !strcontains(var.db_url_params, "verify_ca=false")
    error_message = "db_url_params must keep require_ssl=true and must not set verify_ca=false."
  }
}

variable "db_ca_file" {
  description = "Path, inside the image, of the PEM bundle of Amazon RDS's certificate authorities; passed to every role and to migrate as DOP_<ROLE>__DATABASE_CA_FILE. deploy/scripts/build-and-push.sh puts Amazon's global-bundle.pem there (docs/deploy.md, \"TLS to RDS\")."
  type        = string
  default     = "/app/certs/rds-global-bundle.pem"
}

variable "db_backup_retention_days" {
  description = "Automated backup retention, days."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Deletion protection on the ALB and the database. Off by default so that destroy.sh returns the account to nothing; turn it on for anything that matters."
  type        = bool
  default     = false
}

# ------------------------------------------------------------- Amazon MQ ---

variable "mq_instance_type" {
  description = "Amazon MQ for RabbitMQ instance type (mq.t3.micro is single-instance only; a cluster needs mq.m5.large or larger)."
  type        = string
  default     = "mq.t3.micro"
}

variable "mq_deployment_mode" {
  description = "SINGLE_INSTANCE (one broker node; its queues are gone while it is) or CLUSTER_MULTI_AZ (three nodes across AZs behind one endpoint; the roles then declare quorum queues, which keep their messages while a node is down). Changing it replaces the broker."
  type        = string
  default     = "SINGLE_INSTANCE"

  validation {
    condition     = contains(["SINGLE_INSTANCE", "CLUSTER_MULTI_AZ"], var.mq_deployment_mode)
    error_message = "mq_deployment_mode must be SINGLE_INSTANCE or CLUSTER_MULTI_AZ."
  }
}

variable "mq_engine_version" {
  description = "Amazon MQ RabbitMQ engine version."
  type        = string
  default     = "3.13"
}

variable "mq_username" {
  description = "RabbitMQ user dop connects as (its password is generated)."
  type        = string
  default     = "dop"
}
