# One public ALB, routing by path to the role that owns it:
#   /orders*, /admin*  -> order      (8081)
#   /inventory*        -> inventory  (8082)
#   /payments*         -> payment    (8083)
# Anything else gets a JSON 404 from the ALB itself. /health, /ready and
# /metrics are not routed: the target groups probe /health directly.

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

# Port 80: without a certificate it serves the routes itself; with one it only
# redirects to 443.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP only while var.certificate_arn is empty (an empty account has no domain); with a certificate this listener redirects to HTTPS.
  #checkov:skip=CKV2_AWS_20:Same: the redirect to HTTPS is on when var.certificate_arn is set.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = local.https ? "redirect" : "fixed-response"

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }

    dynamic "fixed_response" {
      for_each = local.https ? [] : [1]
      content {
        content_type = "application/json"
        message_body = jsonencode({ error = "no route for this path", code = "NOT_FOUND" })
        status_code  = "404"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      message_body = jsonencode({ error = "no route for this path", code = "NOT_FOUND" })
      status_code  = "404"
    }
  }
}

resource "aws_lb_listener_rule" "role" {
  for_each = local.roles

  listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.role[each.key].arn
  }

  condition {
    path_pattern {
      values = each.value.paths
    }
  }
}
