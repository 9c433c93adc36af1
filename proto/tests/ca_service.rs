//! The generated CA service: the gRPC path ztunnel calls and the server
//! trait the `ca` crate implements.

use ambient_proto::auth::{
    IstioCertificateRequest, IstioCertificateResponse,
    istio_certificate_service_server::{IstioCertificateService, IstioCertificateServiceServer},
};
use tonic::{Request, Response, Status, server::NamedService};

struct Echo;

#[tonic::async_trait]
impl IstioCertificateService for Echo {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: vec![request.into_inner().csr],
        }))
    }
}

#[test]
fn service_name_is_the_istio_one() {
    assert_eq!(
        <IstioCertificateServiceServer<Echo> as NamedService>::NAME,
        "istio.v1.auth.IstioCertificateService"
    );
    let _server = IstioCertificateServiceServer::new(Echo);
}

#[test]
fn client_type_is_generated() {
    fn assert_client<T>()
    where
        ambient_proto::auth::istio_certificate_service_client::IstioCertificateServiceClient<T>:
            Sized,
    {
    }
    assert_client::<tonic::transport::Channel>();
}
