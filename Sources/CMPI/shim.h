// OpenMPI defines its predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM,
// MPI_IN_PLACE, ...) as macros that take the address of a global; Swift cannot
// import them, so each gets a static inline getter here.
#ifndef UMD_CMPI_SHIM_H
#define UMD_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm umd_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm umd_mpi_comm_null(void) { return MPI_COMM_NULL; }

static inline MPI_Datatype umd_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype umd_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype umd_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype umd_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype umd_mpi_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Datatype umd_mpi_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Datatype umd_mpi_uint64(void) { return MPI_UINT64_T; }

static inline MPI_Op umd_mpi_op_sum(void) { return MPI_SUM; }
static inline MPI_Op umd_mpi_op_max(void) { return MPI_MAX; }
static inline MPI_Op umd_mpi_op_min(void) { return MPI_MIN; }

static inline void *umd_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *umd_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request umd_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler umd_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }

static inline int umd_mpi_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline int umd_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int umd_mpi_success(void) { return MPI_SUCCESS; }
static inline int umd_mpi_thread_single(void) { return MPI_THREAD_SINGLE; }
static inline int umd_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int umd_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int umd_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }

#endif
