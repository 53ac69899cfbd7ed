# One internet-facing ALB, HTTPS only (port 80 answers with a 301 to 443).
# It forwards the customer API and nothing else:
#   POST /orders            -> order    (8081)
#   GET  /orders/{id}       -> order
#   GET  /payments/{id}     -> payment  (8083)
# The operator API (/admin*, /inventory*, GET /orders?user_id=) and the
# operator console (GET /console*) are forwarded only for requests from
# var.operator_cidrs (none by default). Anything else,
# /health, /ready, /metrics and /openapi.json included, gets a JSON 404 from
# the ALB itself; the target groups probe /health directly.

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs need an S3 bucket with its own policy, encryption and lifecycle; for this demo the roles' JSON logs and http_requests_total cover requests.
  #checkov:skip=CKV2_AWS_28:No WAF in the demo (a web ACL and its rules are billed monthly plus per request); attach AWS managed rules before exposing real users.
  #checkov:skip=CKV_AWS_150:Deletion protection follows var.deletion_protection, off by default so that destroy.sh can return the account to nothing.
  name                       = "${local.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60
}

resource "aws_lb_target_group" "role" {
  for_each = local.roles

  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; ALB to task traffic stays inside the VPC's private subnets and the tasks serve plain HTTP.
  name                 = "${local.name}-${each.key}"
  port                 = each.value.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 30

  health_check {
    path                = "/health"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

locals {
  not_found = {
    content_type = "application/json"
    message_body = jsonencode({ error = "no route for this path", code = "NOT_FOUND" })
    status_code  = "404"
  }
}

# Port 80 serves nothing: every request is redirected to HTTPS.
resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = local.not_found.content_type
      message_body = local.not_found.message_body
      status_code  = local.not_found.status_code
    }
  }
}

# The customer API, for everyone allowed_ingress_cidrs lets in.
resource "aws_lb_listener_rule" "public" {
  for_each = local.public_routes

  listener_arn = aws_lb_listener.https.arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.role[each.value.role].arn
  }

  condition {
    http_request_method {
      values = each.value.methods
    }
  }

  condition {
    path_pattern {
      values = each.value.paths
    }
  }
}

# The operator API, only for requests whose source address is in
# operator_cidrs. The roles still require the bearer tokens.
resource "aws_lb_listener_rule" "operator" {
  for_each = local.operator_rules

  listener_arn = aws_lb_listener.https.arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.role[each.value.role].arn
  }

  condition {
    source_ip {
      values = [each.value.cidr]
    }
  }

  condition {
    path_pattern {
      values = each.value.paths
    }
  }

  dynamic "condition" {
    for_each = length(each.value.methods) > 0 ? [each.value.methods] : []
    content {
      http_request_method {
        values = condition.value
      }
    }
  }
}
