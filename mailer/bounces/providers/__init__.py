"""Email providers' bounce and complaint notifications (Amazon SES via SNS, Postmark,
Mailgun): each module checks its provider's signature or credentials and reads the
notification into `Report`s for `mailer.bounces.handling`."""
